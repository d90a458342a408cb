"""Four CPU workers through scripts/msrun_launcher.sh: data_parallel 2 x model_parallel 2, plain and with sequence
parallelism plus the parallel optimizer (AdamW moments split over the data-parallel ranks), follow the loss curve of
the single process; the sharded run's checkpoint resumes in ONE process with --auto_trans_ckpt True on the same
curve. Two launches (~35 s each) run side by side with the single-process reference."""
import os

import mindspore as ms
import numpy as np
import pytest

from tests.e2e.helpers import TINY_SIZES, read_metrics, run_cli, write_user_config
from tests.parallel.msrun import finish, launch, logs, train_command

SAVE_EVERY = 3
DP2_MP2 = {"data_parallel": 2, "model_parallel": 2, "vocab_emb_dp": False}
RUNS = {  # name -> (parallel_config, parallel)
    "dp2_mp2": (DP2_MP2, {"enable_parallel_optimizer": False}),  # the shipped configs enable it
    "dp2_mp2_seq_opt": (dict(DP2_MP2, use_seq_parallel=True),
                        {"enable_parallel_optimizer": True,
                         "parallel_optimizer_config": {"parallel_optimizer_threshold": 0}}),
}


def user_config(path, sp_model_file, wiki_mindrecord, **sections):
    """The tiny GQA model (4 heads, 2 kv heads), global batch 32: 7 steps, a checkpoint every 3."""
    return write_user_config(
        path, "llama2/pretrain_llama2_tiny.yaml", sp_model_file, sizes=dict(TINY_SIZES, num_heads=4, n_kv_heads=2),
        seed=7, runner_config={"epochs": 1, "global_batch_size": 32, "batch_size": None},
        train_dataset={"data_loader": {"dataset_dir": wiki_mindrecord}},
        lr_schedule={"learning_rate": 5.e-3, "warmup_steps": 2},
        runner_wrapper={"use_clip_grad": True, "max_grad_norm": 1.0},
        callbacks=[{"type": "MFLossMonitor"},
                   {"type": "CheckpointMonitor", "prefix": "run", "save_checkpoint_steps": SAVE_EVERY,
                    "keep_checkpoint_max": 10}],
        **sections)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sp_model_file, wiki_mindrecord):
    base = tmp_path_factory.mktemp("four_workers")
    outputs = {name: str(base / name) for name in ("single", "resumed", *RUNS)}
    launches = {}
    for name, (parallel_config, parallel) in RUNS.items():
        config = user_config(base / f"{name}.yaml", sp_model_file, wiki_mindrecord, parallel_config=parallel_config,
                             parallel=dict(parallel, full_batch=False))
        launches[name] = launch(train_command(config, outputs[name]), 4, log_dir=str(base / f"log_{name}"))
    single_config = user_config(base / "single.yaml", sp_model_file, wiki_mindrecord)
    single = run_cli(["run_mindformer.py", "--config", single_config, "--run_mode", "train",
                      "--output_dir", outputs["single"]])
    assert single.returncode == 0, single.stderr[-3000:]
    for name, process in launches.items():
        code, out, err = finish(process)
        assert code == 0, out[-2000:] + err[-2000:] + logs(base / f"log_{name}")
    resumed = run_cli(["run_mindformer.py", "--config", single_config, "--run_mode", "train",
                       "--output_dir", outputs["resumed"],
                       "--load_checkpoint", os.path.join(outputs["dp2_mp2_seq_opt"], "checkpoint"),
                       "--resume_training", f"run_rank_0-1_{SAVE_EVERY}.ckpt", "--auto_trans_ckpt", "True"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return outputs


@pytest.mark.parametrize("name", list(RUNS))
def test_loss_and_gradient_norm_follow_the_single_process(runs, name):
    single, parallel = read_metrics(runs["single"]), read_metrics(runs[name])
    assert len(single) == len(parallel) >= 6
    assert single[-1]["loss"] < single[0]["loss"] - 0.1  # the model learns
    for ref, got in zip(single, parallel):
        assert got["loss"] == pytest.approx(ref["loss"], rel=1e-5), (name, ref["step"], ref["loss"], got["loss"])
        assert got["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-4), (name, ref["step"])


def moments(output, rank):
    folder = os.path.join(output, "checkpoint", f"rank_{rank}")
    name = next(n for n in sorted(os.listdir(folder)) if n.endswith(f"_{SAVE_EVERY}.ckpt"))
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(os.path.join(folder, name)).items()
            if k.startswith("adam_m.")}


def test_each_data_parallel_rank_keeps_its_slice_of_the_moments(runs):
    plain = moments(runs["dp2_mp2"], 0)
    first, second = moments(runs["dp2_mp2_seq_opt"], 0), moments(runs["dp2_mp2_seq_opt"], 2)  # same model part
    assert plain.keys() == first.keys()
    for key, value in plain.items():
        assert first[key].shape[0] * 2 == value.shape[0], key
        np.testing.assert_allclose(np.concatenate([first[key], second[key]]), value, rtol=1e-3, atol=1e-6,
                                   err_msg=key)


def test_the_sharded_checkpoint_resumes_in_one_process_on_the_curve(runs):
    single, resumed = read_metrics(runs["single"]), read_metrics(runs["resumed"])
    assert [m["step"] for m in resumed] == [m["step"] for m in single[SAVE_EVERY:]]
    for ref, got in zip(single[SAVE_EVERY:], resumed):
        assert got["loss"] == pytest.approx(ref["loss"], rel=1e-5), (ref["step"], ref["loss"], got["loss"])
