"""Checkpoints laid out by MindSpore strategy files (semi-auto parallel on Ascend): the strategy is written with
MindSpore's own protobuf classes (and merged over pipeline stages with mindspore.merge_pipeline_strategys), each
rank's slices are cut with MindSpore's own slicing (_load_tensor), and we merge and reshard them exactly."""
import os

import mindspore as ms
import numpy as np
import pytest
from mindspore.parallel._tensor import _load_tensor  # MindSpore's slicing: the oracle our reading must agree with
from mindspore.train import node_strategy_pb2

from mindformers.checkpoint.checkpoint_source import CheckpointSource
from mindformers.checkpoint.transform import merge_to_file
from mindformers.parallel import ParallelSettings
from mindformers.parallel.mesh import stage_of
from mindformers.tools.errors import ConfigError
from mindformers.tools.register import MindFormerConfig
from mindformers.trainer.checkpoint_loading import load_checkpoint_for
from tests.checkpoint.tiny_checkpoint import (arrays, declared, full, raw_tensors,  # noqa: F401  (fixtures)
                                             tiny_network)

EMBEDDING = "model.tok_embeddings.embedding_weight"


def tensor_map(name, ndim, declared):
    """MindSpore's map for our layers on a [dp, mp] device matrix: a declared split goes over mp (map value 0 = the
    last device axis); the embedding's vocabulary is split over dp (value 1), a split along another axis."""
    if name == EMBEDDING:
        return [1, -1]
    dim = declared.get(name)
    return [0 if d == dim else -1 for d in range(ndim)]


def write_strategy(path, layouts, stage=0, opt_shard=0):
    """layouts: {param name: (dev_matrix, tensor_map)} -> a ParallelStrategyMap file as MindSpore saves it."""
    strategy = node_strategy_pb2.ParallelStrategyMap()
    strategy.current_stage = stage
    item = strategy.parallel_strategy_item.add()
    item.node_name = "MatMul-op0"
    item.parallel_strategys.stage = stage
    item.parallel_strategys.parallel_strategy.add().dim.extend([1, 1])
    for name, (dev_matrix, mapping) in layouts.items():
        layout_item = strategy.parallel_layout_item.add()
        layout_item.param_name = name
        layouts_pb = layout_item.parallel_layouts
        layouts_pb.dev_matrix.add().dim.extend(dev_matrix)
        layouts_pb.tensor_map.add().dim.extend(mapping)
        layouts_pb.param_split_shape.add()
        layouts_pb.indices_offset.add()
        layouts_pb.field = 0
        layouts_pb.opt_weight_shard_step = 0
        layouts_pb.opt_weight_shard_size = opt_shard
    with open(path, "wb") as stream:
        stream.write(strategy.SerializeToString())
    return str(path)


def write_rank_files(folder, full, layouts, ranks, stage_of_rank=lambda rank: 0, stage_of_name=None):
    """Each rank's checkpoint as semi-auto parallel saves it: its slice of every weight of its stage (moments
    sliced like their weight), counters whole."""
    for rank in ranks:
        items = []
        for name, value in full.items():
            weight = name.split(".", 1)[1] if name.startswith("adam_") else name
            if stage_of_name and weight in layouts and stage_of_name(weight) != stage_of_rank(rank):
                continue
            if weight in layouts:
                dev_matrix, mapping = layouts[weight]
                value = _load_tensor(ms.Tensor(value), dev_matrix, mapping, rank_id=rank)
            items.append({"name": name, "data": ms.Tensor(value.copy())})  # a copy: C-contiguous, 0-d stays 0-d
        os.makedirs(folder / f"rank_{rank}")
        ms.save_checkpoint(items, str(folder / f"rank_{rank}" / f"llama_rank_{rank}-1_4.ckpt"))


@pytest.fixture(scope="module")
def data_model_parallel(full, declared, tmp_path_factory):
    """dp=2 x mp=2 on one stage: (checkpoint folder, strategy file)."""
    base = tmp_path_factory.mktemp("dp2mp2")
    whole = arrays(full)
    layouts = {name: ([2, 2], tensor_map(name, len(whole[name].shape), declared)) for name in declared}
    strategy = write_strategy(base / "ckpt_strategy.ckpt", layouts)
    write_rank_files(base / "checkpoint", whole, layouts, range(4))
    return str(base / "checkpoint"), strategy


def test_mindspore_reads_the_strategy_we_wrote(data_model_parallel, declared):
    layouts = ms.parallel.build_searched_strategy(data_model_parallel[1])
    assert set(layouts) == set(declared)
    assert list(layouts[EMBEDDING].tensor_map[0].dim) == [1, -1]


def test_merge_is_bit_exact(data_model_parallel, full, tmp_path):
    folder, strategy = data_model_parallel
    source = CheckpointSource(folder, src_strategy=strategy)
    assert source.layouts.world_size == 4 and len(source.ranks) == 4
    merge_to_file(source, str(tmp_path / "merged.ckpt"), progress=False)
    assert raw_tensors(tmp_path / "merged.ckpt") == raw_tensors(full)


@pytest.mark.parametrize("model_parallel,model_rank", [(1, 0), (2, 1)])
def test_loads_into_our_model_parallel_ranks(data_model_parallel, full, declared, model_parallel, model_rank):
    folder, strategy = data_model_parallel
    network = tiny_network(model_parallel, model_rank)
    config = MindFormerConfig(load_checkpoint=folder, auto_trans_ckpt=True, src_strategy_path_or_dir=strategy)
    load_checkpoint_for(network, config, ParallelSettings(model_parallel=model_parallel), model_rank)
    whole = arrays(full)
    for param in network.get_parameters():
        dim = declared[param.name]
        expected = whole[param.name] if dim is None or model_parallel == 1 else \
            np.split(whole[param.name], model_parallel, axis=dim)[model_rank]
        assert np.array_equal(param.asnumpy(), expected), param.name


@pytest.mark.parametrize("merged", [True, False])
def test_pipeline_stages_from_per_stage_or_merged_files(full, declared, tmp_path, merged):
    """Two stages of [dp=1, mp=2]: ranks 0-1 hold layers 0-1 and the embedding, ranks 2-3 the rest."""
    whole = arrays(full)
    stage_files = tmp_path / "stages"
    stage_files.mkdir()
    layouts = {name: ([1, 2], tensor_map(name, len(whole[name].shape), declared)) for name in declared}
    layouts[EMBEDDING] = ([1, 2], [-1, -1])

    def stage(name):
        return stage_of(name, 3, 2)
    for index in (0, 1):
        write_strategy(stage_files / f"ckpt_strategy_rank_{2 * index}.ckpt",
                       {name: layout for name, layout in layouts.items() if stage(name) == index}, stage=index)
    strategy = str(stage_files)
    if merged:
        strategy = str(tmp_path / "merged_strategy.ckpt")
        ms.parallel.merge_pipeline_strategys(str(stage_files), strategy)
    write_rank_files(tmp_path / "checkpoint", whole, layouts, range(4), lambda rank: rank // 2, stage)
    source = CheckpointSource(tmp_path / "checkpoint", src_strategy=strategy)
    assert source.layouts.world_size == 4
    assert "lm_head.weight" not in source.ranks[0].tensors and EMBEDDING not in source.ranks[3].tensors
    merge_to_file(source, str(tmp_path / "merged.ckpt"), progress=False)
    assert raw_tensors(tmp_path / "merged.ckpt") == raw_tensors(full)


def test_layouts_that_are_not_plain_splits_are_refused(data_model_parallel, tmp_path):
    folder, _ = data_model_parallel
    name = "model.layers.0.attention.wq.weight"
    two_dims = write_strategy(tmp_path / "two_dims.ckpt", {name: ([2, 2], [1, 0])})
    with pytest.raises(ConfigError, match=rf"two_dims.ckpt: parameter '{name}' is split along dimensions \[0, 1\] "
                                          r".*only plain splits of one dimension can be resharded"):
        CheckpointSource(folder, src_strategy=two_dims)
    sharded = write_strategy(tmp_path / "opt.ckpt", {name: ([2, 2], [0, -1])}, opt_shard=2)
    with pytest.raises(ConfigError, match=r"is optimizer-sharded \(opt_weight_shard_size 2\)"):
        CheckpointSource(folder, src_strategy=sharded)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\x00not a strategy")
    with pytest.raises(ConfigError, match=r"junk.ckpt is neither a layout file nor a MindSpore strategy file"):
        CheckpointSource(folder, src_strategy=str(junk))
