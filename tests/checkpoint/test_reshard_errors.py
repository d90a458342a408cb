"""A distributed checkpoint that cannot be resharded is one line naming the file and what was expected: a strategy
missing, a rank folder missing, files that do not hold what their strategy says, ranks from different saves.
transform_ckpt prints such errors as one line with exit code 2 and leaves nothing half-written."""
import json
import os
import shutil

import mindspore as ms
import numpy as np
import pytest

from mindformers.checkpoint.checkpoint_source import CheckpointSource
from mindformers.checkpoint.transform import merge_to_file, mesh_records, write_distributed
from mindformers.parallel.layout_file import LAYOUT_FILE
from mindformers.tools.errors import ConfigError
from mindformers.tools.transform_ckpt import main as transform_main
from tests.checkpoint.tiny_checkpoint import declared, full, mesh  # noqa: F401  (fixtures)


@pytest.fixture
def split_2(full, declared, tmp_path):
    """A fresh copy of the whole checkpoint split for dp=2 x mp=2 (four rank folders) to break."""
    source = CheckpointSource(full)
    folder = tmp_path / "split"
    write_distributed(source, mesh_records(source, mesh(2, 2, 1), declared), str(folder),
                      progress=False)
    return folder


def ckpt_of(folder, rank):
    return next(p for p in (folder / f"rank_{rank}").iterdir() if p.suffix == ".ckpt")


def test_missing_strategy_files(split_2):
    os.remove(split_2 / "rank_2" / LAYOUT_FILE)
    with pytest.raises(ConfigError, match=r"load_checkpoint: .*rank_2 has no strategy.json \(expected one beside"):
        CheckpointSource(split_2)
    for rank in (0, 1, 3):
        os.remove(split_2 / f"rank_{rank}" / LAYOUT_FILE)
    with pytest.raises(ConfigError, match=r"holds 4 rank folders but no strategy.json .*--src_strategy_path_or_dir"):
        CheckpointSource(split_2)


def test_missing_rank_folder(split_2, tmp_path):
    shutil.rmtree(split_2 / "rank_3")  # its data-parallel replica rank_1 holds the same pieces: still usable
    merge_to_file(CheckpointSource(split_2), str(tmp_path / "merged.ckpt"), progress=False)
    shutil.rmtree(split_2 / "rank_1")
    with pytest.raises(ConfigError, match=r"no file holds part 2 of 2 of tensor 'model.layers.0.attention.wq.weight' "
                                          r"\(split along dimension 0\): rank_1/ is missing; rank_3/ is missing"):
        merge_to_file(CheckpointSource(split_2), str(tmp_path / "merged2.ckpt"), progress=False)
    assert not (tmp_path / "merged2.ckpt").exists() and not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


def test_file_that_does_not_match_its_strategy(split_2, full):
    replaced = ckpt_of(split_2, 1)
    os.remove(replaced)
    os.remove(f"{replaced}.sha256")  # (with its manifest, the replaced file would be refused as damaged)
    shutil.copy(full, split_2 / "rank_1" / "tiny_rank_1-2_7.ckpt")  # whole tensors where shards belong
    with pytest.raises(ConfigError, match=r"rank_1/tiny_rank_1-2_7.ckpt: tensor 'model.layers.0.attention.wq.weight' "
                                          r"has shape \(32, 32\), but .*rank_1/strategy.json says this rank holds "
                                          r"part 2 of 2 along dimension 0 of \(32, 32\), i.e. \(16, 32\)"):
        CheckpointSource(split_2)


def test_strategy_files_of_different_runs(split_2):
    path = split_2 / "rank_3" / LAYOUT_FILE
    record = json.loads(path.read_text())
    path.write_text(json.dumps(dict(record, mesh=mesh(1, 4, 1))))
    with pytest.raises(ConfigError, match=r"rank_3/strategy.json names mesh data_parallel=1 model_parallel=4 "
                                          r"pipeline_stage=1, .*rank_0/strategy.json names data_parallel=2"):
        CheckpointSource(split_2)
    path.write_text(json.dumps(dict(record, rank=1)))
    with pytest.raises(ConfigError, match=r"rank_3/strategy.json is the layout of rank 1, expected rank 3"):
        CheckpointSource(split_2)


def test_rank_outside_the_mesh_and_mixed_saves(split_2):
    shutil.copytree(split_2 / "rank_3", split_2 / "rank_4")
    os.rename(ckpt_of(split_2, 4), split_2 / "rank_4" / "tiny_rank_4-2_7.ckpt")
    layout = split_2 / "rank_4" / LAYOUT_FILE
    layout.write_text(json.dumps(dict(json.loads(layout.read_text()), rank=4)))
    with pytest.raises(ConfigError, match=r"rank_4 is rank 4, but the strategy data_parallel=2 model_parallel=2 "
                                          r"pipeline_stage=1 .* has 4 ranks"):
        CheckpointSource(split_2)
    shutil.rmtree(split_2 / "rank_4")
    os.rename(ckpt_of(split_2, 2), split_2 / "rank_2" / "tiny_rank_2-2_5.ckpt")
    with pytest.raises(ConfigError, match=r"rank_2 has no tiny_rank_2-2_7\.\* \(the same save as "
                                          r"tiny_rank_0-2_7.ckpt\)"):
        CheckpointSource(split_2)


def test_one_rank_file_alone_is_not_a_checkpoint(split_2):
    with pytest.raises(ConfigError, match=r"tiny_rank_1-2_7.ckpt is one rank's part of a checkpoint saved under "
                                          r"data_parallel=2 model_parallel=2 .*pass the folder"):
        CheckpointSource(ckpt_of(split_2, 1))


def test_transform_errors_are_one_line_and_leave_nothing(split_2, full, tmp_path, capsys):
    def fails(*argv):
        with pytest.raises(SystemExit) as caught:
            transform_main([str(arg) for arg in argv])
        assert caught.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        return lines[0]

    out = tmp_path / "out"
    assert "--dst_mesh: expected data_parallel,model_parallel[,pipeline_stage[,expert_parallel]]" in fails(
        "--src_checkpoint", split_2, "--dst_checkpoint", out, "--dst_mesh", "2,two")
    assert "--src_checkpoint: checkpoint not found" in fails("--src_checkpoint", tmp_path / "nothing",
                                                             "--dst_checkpoint", out / "m.ckpt")
    assert "a merged checkpoint is one .ckpt file" in fails("--src_checkpoint", split_2, "--dst_checkpoint", out)
    assert "has no strategy saying how its weights split; pass the model's YAML (--config)" in fails(
        "--src_checkpoint", full, "--dst_checkpoint", out, "--dst_mesh", "1,2")
    assert "cannot split its dimension 0 into model_parallel 3" in fails(
        "--src_checkpoint", split_2, "--dst_checkpoint", out, "--dst_mesh", "1,3,1")
    assert "transform_ckpt: the following arguments are required: --src_checkpoint" in fails("--dst_checkpoint", out)
    assert "MindSpore strategy files are read as sources only" in fails(
        "--src_checkpoint", split_2, "--dst_checkpoint", out, "--dst_strategy", full)
    # A piece found missing while writing: the target folder never appears.
    shutil.rmtree(split_2 / "rank_1")
    shutil.rmtree(split_2 / "rank_3")
    assert "no file holds part 2 of 2" in fails("--src_checkpoint", split_2, "--dst_checkpoint", out,
                                                "--dst_mesh", "1,1,2", "--no_progress")
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]
    out.mkdir()
    (out / "rank_0").mkdir()
    assert "already holds rank_*/ folders" in fails("--src_checkpoint", full, "--dst_checkpoint", out, "--dst_mesh",
                                                    "1,1,2", "--config", "configs/llama2/pretrain_llama2_tiny.yaml")


def test_mismatched_bf16_and_float_ranks(split_2):
    """Rank files that disagree on a tensor's dtype are not one checkpoint."""
    path = ckpt_of(split_2, 1)
    tensors = ms.load_checkpoint(str(path))
    tensors["lm_head.weight"] = ms.Parameter(ms.Tensor(np.zeros((32, 32), np.float16)), name="lm_head.weight")
    ms.save_checkpoint([{"name": k, "data": v} for k, v in tensors.items()], str(path))
    os.remove(f"{path}.sha256")  # rewritten by another tool: unverifiable, not damaged
    with pytest.raises(ConfigError, match=r"tensor 'lm_head.weight' is \[\(64, 32\)\] / \['F16', 'F32'\] in "
                                          r"different rank files"):
        merge_to_file(CheckpointSource(split_2), str(split_2 / "merged.ckpt"), progress=False)
