"""Splitting a whole training checkpoint (weights, AdamW moments, counters) for a mesh and merging it back gives
the original bit for bit, for every strategy tried; each rank's file holds exactly np.split(full, mp, dim)[m] of
its stage's tensors; sharded checkpoints transform directly into other meshes."""
import os

import numpy as np
import pytest

from mindformers.checkpoint.checkpoint_source import CheckpointSource
from mindformers.checkpoint.transform import merge_to_file, mesh_records, source_weights, write_distributed
from mindformers.models.modules.layout import declared_splits, parameter_splits
from mindformers.parallel.layout_file import LAYOUT_FILE, read_layout_file
from mindformers.tools.transform_ckpt import main as transform_main
from tests.checkpoint.tiny_checkpoint import (arrays, declared, full, mesh, raw_tensors,  # noqa: F401  (fixtures)
                                             save_training_checkpoint, tiny_network)

# Three layers over two stages: layers 0 and 1 on the first stage (with the embedding), layer 2 on the second
# (with the final norm and the head); counters and the learning rate on both.
LAYER_STAGE = {0: 0, 1: 0, 2: 1}


def split(source_path, target_mesh, declared, out, src_strategy=None):
    source = CheckpointSource(source_path, src_strategy)
    write_distributed(source, mesh_records(source, target_mesh, declared), str(out), progress=False)
    return str(out)


def merge(folder, out):
    merge_to_file(CheckpointSource(folder), str(out), progress=False)
    return str(out)


def expected_stages(name, pipeline_stage):
    """Which stages hold tensor `name` (an optimizer moment goes with its weight), worked out by hand."""
    weight = name.split(".", 1)[1] if name.startswith(("adam_m.", "adam_v.")) else name
    if pipeline_stage == 1:
        return {0}
    if ".layers." in weight:
        return {LAYER_STAGE[int(weight.split(".layers.")[1].split(".")[0])]}
    if "tok_embeddings" in weight:
        return {0}
    if weight in ("model.norm_out.weight", "lm_head.weight"):
        return {1}
    return {0, 1}  # not a weight: step counters, learning rate, loss scale


def check_rank_files(full_path, declared, folder, dp, mp, pp):
    whole = arrays(full_path)
    for rank in range(dp * mp * pp):
        stage, model = rank // (dp * mp), rank % mp
        rank_folder = os.path.join(folder, f"rank_{rank}")
        record = read_layout_file(os.path.join(rank_folder, LAYOUT_FILE))
        assert (record["rank"], record["stage"], record["world_size"]) == (rank, stage, dp * mp * pp)
        files = [name for name in os.listdir(rank_folder) if name.endswith(".ckpt")]
        assert files == [f"tiny_rank_{rank}-2_7.ckpt"]  # the source's name pattern, so a resume finds each rank
        held = arrays(os.path.join(rank_folder, files[0]))
        assert set(held) == {name for name in whole if stage in expected_stages(name, pp)}, rank
        for name, value in held.items():
            weight = name.split(".", 1)[1] if name.startswith("adam_") else name
            dim = declared.get(weight)
            expected = whole[name] if dim is None or mp == 1 else np.split(whole[name], mp, axis=dim)[model]
            assert value.dtype == expected.dtype and value.shape == expected.shape, (rank, name)
            assert np.array_equal(value, expected), (rank, name)


@pytest.mark.parametrize("dp,mp,pp", [(1, 2, 1), (1, 4, 1), (2, 1, 1), (2, 2, 1), (1, 1, 2), (2, 2, 2), (1, 4, 2)])
def test_merge_of_split_is_the_original_bit_for_bit(full, declared, tmp_path, dp, mp, pp):
    folder = split(full, mesh(dp, mp, pp), declared, tmp_path / "split")
    check_rank_files(full, declared, folder, dp, mp, pp)
    assert raw_tensors(merge(folder, tmp_path / "merged.ckpt")) == raw_tensors(full)


def test_bfloat16_checkpoint_round_trip(declared, tmp_path):
    full = save_training_checkpoint(tmp_path / "bf16_rank_0-2_7.ckpt", dtype="bfloat16")
    assert {dtype for dtype, _, _ in raw_tensors(full).values()} >= {"BF16"}
    folder = split(full, mesh(1, 2, 2), declared, tmp_path / "split")
    assert raw_tensors(merge(folder, tmp_path / "merged.ckpt")) == raw_tensors(full)


@pytest.mark.parametrize("first,second", [((1, 2, 1), (2, 4, 1)), ((2, 2, 2), (1, 1, 2)), ((1, 1, 2), (1, 2, 1))])
def test_sharded_checkpoint_transforms_into_another_mesh(full, declared, tmp_path, first, second):
    """From a sharded source the split dimensions come from its own strategy files (no model config needed)."""
    folder = split(full, mesh(*first), declared, tmp_path / "first")
    assert source_weights(CheckpointSource(folder)) == {name: declared_splits(dim) for name, dim in declared.items()}
    source = CheckpointSource(folder)
    write_distributed(source, mesh_records(source, mesh(*second), source_weights(source)), str(tmp_path / "second"),
                      progress=False)
    check_rank_files(full, declared, tmp_path / "second", *second)
    assert raw_tensors(merge(tmp_path / "second", tmp_path / "merged.ckpt")) == raw_tensors(full)


def test_transform_to_the_strategy_of_another_run(full, declared, tmp_path, capsys):
    """transform_ckpt --dst_strategy: the target mesh read from another run's rank folders."""
    other_run = split(full, mesh(2, 2, 2), declared, tmp_path / "other_run")
    source = split(full, mesh(1, 4, 1), declared, tmp_path / "source")
    assert transform_main(["--src_checkpoint", source, "--dst_checkpoint", str(tmp_path / "out"), "--dst_strategy",
                           other_run, "--no_progress"]) == 0
    assert f"wrote 8 rank folders to {tmp_path / 'out'}" in capsys.readouterr().out
    check_rank_files(full, declared, tmp_path / "out", 2, 2, 2)


def test_experts_split_over_expert_and_model_parallel_at_once(tmp_path):
    """A mixture-of-experts checkpoint on data_parallel 2 x model_parallel 2 with expert_parallel 2: each rank holds
    its half of the experts (by data-parallel index) and its half of their features (by model-parallel index), the
    moments alike; merged back it is the original bit for bit, and it transforms directly into expert_parallel 4."""
    moe = {"expert_num": 4, "num_experts_chosen": 2}
    whole_path = save_training_checkpoint(tmp_path / "tiny_rank_0-2_7.ckpt", moe_config=moe)
    declared = parameter_splits(tiny_network(moe_config=moe))
    assert declared["model.layers.0.feed_forward.ffn.w2.weight"] == {"expert_parallel": 0, "model_parallel": 2}
    folder = split(whole_path, dict(mesh(2, 2, 1), expert_parallel=2), declared, tmp_path / "split")
    whole = arrays(whole_path)
    for rank in range(4):
        data, model = rank // 2, rank % 2
        (name,) = [n for n in os.listdir(os.path.join(folder, f"rank_{rank}")) if n.endswith(".ckpt")]
        held = arrays(os.path.join(folder, f"rank_{rank}", name))
        for weight, feature_dim in (("ffn.w1.weight", 1), ("ffn.w2.weight", 2)):
            for tensor in (f"model.layers.1.feed_forward.{weight}", f"adam_m.model.layers.1.feed_forward.{weight}"):
                expected = np.split(np.split(whole[tensor], 2, 0)[data], 2, feature_dim)[model]
                assert np.array_equal(held[tensor], expected), (rank, tensor)
    assert raw_tensors(merge(folder, tmp_path / "merged.ckpt")) == raw_tensors(whole_path)
    source = CheckpointSource(folder)
    second = split(folder, dict(mesh(4, 1, 1), expert_parallel=4), source_weights(source), tmp_path / "second")
    assert raw_tensors(merge(second, tmp_path / "merged_again.ckpt")) == raw_tensors(whole_path)


def test_tied_embedding_goes_to_the_first_and_the_last_stage(tmp_path):
    """A model whose head reads the word embedding: transform_ckpt --dst_mesh gives the last stage its copy (and
    its moments) too, as a pipeline run's own layout does, and merging takes the embedding once."""
    tied = save_training_checkpoint(tmp_path / "tied_rank_0-2_7.ckpt", tie_word_embeddings=True)
    whole = arrays(tied)
    embedding = "model.tok_embeddings.embedding_weight"
    assert embedding in whole and not any(name.startswith("lm_head") for name in whole)
    source = CheckpointSource(tied)
    # the vocabulary split over model_parallel (vocab_emb_dp False), so each rank's copy is its part
    declared_tied = parameter_splits(tiny_network(tie_word_embeddings=True, parallel_config={"vocab_emb_dp": False}))
    assert declared_tied[embedding] == {"model_parallel": 0}
    folder = tmp_path / "split"
    write_distributed(source, mesh_records(source, mesh(1, 2, 2), declared_tied), str(folder), progress=False)
    for rank in range(4):
        record = read_layout_file(os.path.join(folder, f"rank_{rank}", LAYOUT_FILE))
        assert record["parameters"][embedding]["stage"] == [0, 1]
        held = arrays(os.path.join(folder, f"rank_{rank}", f"tied_rank_{rank}-2_7.ckpt"))
        for name in (embedding, f"adam_m.{embedding}", f"adam_v.{embedding}"):
            assert np.array_equal(held[name], np.split(whole[name], 2, axis=0)[rank % 2]), (rank, name)
    assert raw_tensors(merge(folder, tmp_path / "merged.ckpt")) == raw_tensors(tied)
