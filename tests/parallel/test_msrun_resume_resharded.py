"""A run trained with model_parallel 2 through scripts/msrun_launcher.sh (2 workers: every weight, the vocabulary
included, split in two, with its AdamW moments) resumes in ONE process with --auto_trans_ckpt True and continues
the loss curve of an uninterrupted single-process run. One launch (~30 s) beside two single-process runs."""
import os

import pytest

from tests.e2e.helpers import TINY_SIZES, read_metrics, run_cli, write_user_config
from tests.parallel.msrun import finish, launch, logs, train_command

SAVE_EVERY = 4


def user_config(path, sp_model_file, wiki_mindrecord, **sections):
    """The tiny GQA model, global batch 16 (about 10 steps over the test data), a checkpoint every 4 steps."""
    return write_user_config(
        path, "llama2/pretrain_llama2_tiny.yaml", sp_model_file, sizes=dict(TINY_SIZES, num_heads=4, n_kv_heads=2),
        seed=5, runner_config={"epochs": 1, "global_batch_size": 16, "batch_size": None},
        train_dataset={"data_loader": {"dataset_dir": wiki_mindrecord}},
        lr_schedule={"learning_rate": 5.e-3, "warmup_steps": 2},
        runner_wrapper={"use_clip_grad": True, "max_grad_norm": 1.0},
        callbacks=[{"type": "MFLossMonitor"},
                   {"type": "CheckpointMonitor", "prefix": "mp", "save_checkpoint_steps": SAVE_EVERY,
                    "keep_checkpoint_max": 10}],
        **sections)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sp_model_file, wiki_mindrecord):
    base = tmp_path_factory.mktemp("resume_resharded")
    outputs = {name: str(base / name) for name in ("mp2", "single", "resumed")}
    mp2_config = user_config(base / "mp2.yaml", sp_model_file, wiki_mindrecord,
                             parallel_config={"data_parallel": 1, "model_parallel": 2, "vocab_emb_dp": False})
    mp2 = launch(train_command(mp2_config, outputs["mp2"]), 2, log_dir=str(base / "log_mp2"))
    single_config = user_config(base / "single.yaml", sp_model_file, wiki_mindrecord)
    single = run_cli(["run_mindformer.py", "--config", single_config, "--run_mode", "train",
                      "--output_dir", outputs["single"]])
    assert single.returncode == 0, single.stderr[-3000:]
    code, out, err = finish(mp2)
    assert code == 0, out[-2000:] + err[-2000:] + logs(base / "log_mp2")
    resumed = run_cli(["run_mindformer.py", "--config", single_config, "--run_mode", "train",
                       "--output_dir", outputs["resumed"], "--load_checkpoint", os.path.join(outputs["mp2"],
                                                                                             "checkpoint"),
                       "--resume_training", f"mp_rank_0-1_{SAVE_EVERY}.ckpt", "--auto_trans_ckpt", "True"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return outputs, resumed


def test_one_process_resumes_the_model_parallel_run_on_its_loss_curve(runs):
    outputs, _ = runs
    single, mp2, resumed = (read_metrics(outputs[name]) for name in ("single", "mp2", "resumed"))
    assert len(single) == len(mp2) >= SAVE_EVERY + 4
    assert [m["step"] for m in resumed] == [m["step"] for m in single[SAVE_EVERY:]]
    for ref, got in zip(single[SAVE_EVERY:], resumed):
        assert got["loss"] == pytest.approx(ref["loss"], rel=2e-3), (ref["step"], ref["loss"], got["loss"])
        assert got["grad_norm"] == pytest.approx(ref["grad_norm"], rel=2e-3), ref["step"]
        assert got["lr"] == pytest.approx(ref["lr"], rel=1e-6), ref["step"]


def test_resume_reports_where_it_resharded_from(runs):
    outputs, resumed = runs
    log = open(os.path.join(outputs["resumed"], "log", "rank_0", "info.log"), encoding="utf-8").read()
    assert "auto_trans_ckpt: resharded" in log and "data_parallel=1 model_parallel=2 pipeline_stage=1" in log, \
        log[-2000:] + resumed.stderr[-2000:]
    assert "resuming at global step 4" in log
