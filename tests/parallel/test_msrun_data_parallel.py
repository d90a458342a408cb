"""Data parallelism on CPU through scripts/msrun_launcher.sh (2 workers, tiny model): ranks stay identical, the
loss curve equals the single-process one with the same global batch, two "nodes" equal one node, and a failing
worker fails the launch. Each msrun launch costs ~30 s, so the module makes three launches in all."""
import os

import mindspore as ms
import numpy as np
import pytest

from tests.e2e.helpers import read_metrics, run_cli, write_user_config
from tests.parallel.msrun import finish, free_port, launch, logs, train_command

STEPS = 6


@pytest.fixture(scope="module")
def dp_config(tmp_path_factory, sp_model_file, wiki_mindrecord):
    """The tiny config (2 layers, hidden 64, seq 32), global batch 4, a few steps, a checkpoint at the end."""
    return write_user_config(
        tmp_path_factory.mktemp("dp_config") / "dp.yaml", "llama2/pretrain_llama2_tiny.yaml", sp_model_file,
        seed=7, runner_config={"epochs": 1, "global_batch_size": 4, "batch_size": None},
        train_dataset={"data_loader": {"dataset_dir": wiki_mindrecord}},
        lr_schedule={"learning_rate": 5.e-3, "warmup_steps": 2, "total_steps": STEPS},
        callbacks=[{"type": "MFLossMonitor"},
                   {"type": "CheckpointMonitor", "prefix": "dp", "save_checkpoint_steps": STEPS,
                    "keep_checkpoint_max": 1}])


def weights(output, rank):
    folder = os.path.join(output, "checkpoint", f"rank_{rank}")
    names = [n for n in os.listdir(folder) if n.endswith(".ckpt")]
    assert len(names) == 1, names
    params = ms.load_checkpoint(os.path.join(folder, names[0]))
    return {k: v.asnumpy() for k, v in params.items() if not k.startswith(("adam_", "global_step", "scale"))}


def steps(metrics):
    return [m for m in metrics if m["step"] <= STEPS]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, dp_config):
    """The single-process reference, the 2-worker single-node run and the 2-node run, started together."""
    base = tmp_path_factory.mktemp("dp_runs")
    outputs = {name: str(base / name) for name in ("single", "one_node", "two_nodes")}
    for name in ("one_node", "two_nodes"):
        with open(dp_config, encoding="utf-8") as stream:
            text = stream.read()
        with open(base / f"{name}.yaml", "w", encoding="utf-8") as stream:
            stream.write(text + "parallel_config:\n  data_parallel: 2\n")
    one = launch(train_command(base / "one_node.yaml", outputs["one_node"], True), 2,
                 log_dir=str(base / "log_one"))
    port = free_port()
    nodes = [launch(train_command(base / "two_nodes.yaml", outputs["two_nodes"], True), 2, local=1, node_rank=r,
                    port=port, log_dir=str(base / f"log_node{r}")) for r in (0, 1)]
    single = run_cli(["run_mindformer.py", "--config", dp_config, "--run_mode", "train", "--output_dir",
                      outputs["single"]])
    assert single.returncode == 0, single.stderr[-3000:]
    code, out, err = finish(one)
    assert code == 0, out[-2000:] + err[-2000:] + logs(base / "log_one")
    for rank, node in enumerate(nodes):
        code, out, err = finish(node)
        assert code == 0, out[-2000:] + err[-2000:] + logs(base / f"log_node{rank}")
    return outputs


def test_both_ranks_end_with_identical_weights(runs):
    rank0, rank1 = weights(runs["one_node"], 0), weights(runs["one_node"], 1)
    assert rank0.keys() == rank1.keys() and len(rank0) > 10
    for name in rank0:
        np.testing.assert_array_equal(rank0[name], rank1[name], err_msg=name)


def test_loss_curve_equals_single_process_with_same_global_batch(runs):
    single, parallel = read_metrics(runs["single"]), read_metrics(runs["one_node"])
    assert len(single) == len(parallel) >= STEPS
    for ref, got in zip(single, parallel):
        assert got["loss"] == pytest.approx(ref["loss"], rel=2e-3), (ref["step"], ref["loss"], got["loss"])
    last_single, last_parallel = weights(runs["single"], 0), weights(runs["one_node"], 0)
    for name in last_single:
        np.testing.assert_allclose(last_parallel[name], last_single[name], rtol=2e-3, atol=2e-4, err_msg=name)


def test_two_nodes_train_to_the_same_result_as_one_node(runs):
    assert [m["loss"] for m in read_metrics(runs["two_nodes"])] == pytest.approx(
        [m["loss"] for m in read_metrics(runs["one_node"])], rel=1e-5)
    one, two = weights(runs["one_node"], 0), weights(runs["two_nodes"], 1)
    for name in one:
        np.testing.assert_allclose(two[name], one[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_rank_folders_hold_checkpoints_and_their_layout_file(runs):
    for rank in (0, 1):
        folder = os.path.join(runs["one_node"], "checkpoint", f"rank_{rank}")
        assert "strategy.json" in os.listdir(folder)
    # One shared metrics record (rank 0), per-rank log folders.
    assert os.path.isdir(os.path.join(runs["one_node"], "log", "rank_1"))


def test_a_failing_worker_fails_the_launch(tmp_path, dp_config):
    """pipeline_stage 2 with one micro-batch is refused by every worker, before anything is compiled: msrun exits
    non-zero."""
    config = tmp_path / "pp.yaml"
    with open(dp_config, encoding="utf-8") as stream:
        config.write_text(stream.read() + "parallel_config:\n  data_parallel: 1\n  pipeline_stage: 2\n"
                          "  micro_batch_num: 1\n")
    code, out, err = finish(launch(train_command(config, tmp_path / "out", True), 2, log_dir=str(tmp_path / "log")))
    assert code != 0
    assert "a worker failed" in err
    assert "error: parallel_config.micro_batch_num: 1 is less than pipeline_stage (2)" in logs(tmp_path / "log")
