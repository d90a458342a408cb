"""End to end: real text -> llama_preprocess.py -> run_mindformer.py train -> checkpoints -> resume."""
import os

import pytest

from tests.e2e.helpers import read_metrics, run_cli, write_user_config


@pytest.fixture(scope="module")
def user_config(tmp_path_factory, sp_model_file, wiki_mindrecord):
    """A user's YAML that builds on the shipped tiny config and overrides what users override."""
    return write_user_config(
        tmp_path_factory.mktemp("user") / "my_pretrain.yaml", "llama2/pretrain_llama2_tiny.yaml", sp_model_file,
        seed=42, context={"mode": 0}, runner_config={"epochs": 2, "batch_size": 2},
        train_dataset={"data_loader": {"dataset_dir": wiki_mindrecord}},
        lr_schedule={"learning_rate": 5.e-3, "warmup_steps": 2}, tensorboard={"tensorboard_queue_size": 5},
        callbacks=[{"type": "MFLossMonitor", "per_print_times": 5},
                   {"type": "CheckpointMonitor", "prefix": "mine", "save_checkpoint_steps": 4,
                    "keep_checkpoint_max": 100}])


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, user_config):
    output = str(tmp_path_factory.mktemp("full"))
    result = run_cli(["run_mindformer.py", "--config", user_config, "--run_mode", "train", "--output_dir", output])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return output, result


def test_loss_falls_and_metrics_are_logged(full_run):
    output, result = full_run
    metrics = read_metrics(output)
    assert [m["step"] for m in metrics] == list(range(1, len(metrics) + 1))
    for key in ("loss", "lr", "grad_norm", "tokens_per_s", "mfu", "eta_s", "epoch"):
        assert key in metrics[0]
    assert {m["epoch"] for m in metrics} == {1, 2}
    first = sum(m["loss"] for m in metrics[:3]) / 3
    last = sum(m["loss"] for m in metrics[-3:]) / 3
    assert last < first - 0.5, (first, last)
    assert "ETA" in result.stdout and "tokens/s" in result.stdout


def test_checkpoints_are_named_per_rank(full_run):
    output, _ = full_run
    folder = os.path.join(output, "checkpoint", "rank_0")
    names = sorted(os.listdir(folder))
    metrics = read_metrics(output)
    steps_per_epoch = len(metrics) // 2
    assert f"mine_rank_0-1_4.ckpt" in names
    assert f"mine_rank_0-2_{steps_per_epoch}.ckpt" in names  # the final step is always saved
    assert not [n for n in names if n.startswith(".tmp-")]


@pytest.fixture(scope="module")
def resumed_run(full_run, user_config, tmp_path_factory):
    """Resume from a checkpoint in the middle of the first epoch, into a fresh output folder, profiling the first
    steps after the resume point (--profile; the window is profile_start_step..profile_stop_step, default 1..10)."""
    output, _ = full_run
    steps_per_epoch = len(read_metrics(output)) // 2
    resume_step = 8 if steps_per_epoch > 8 else 4
    source = os.path.join(output, "checkpoint", "rank_0", f"mine_rank_0-1_{resume_step}.ckpt")
    resumed_dir = str(tmp_path_factory.mktemp("resumed"))
    result = run_cli(["run_mindformer.py", "--config", user_config, "--output_dir", resumed_dir,
                      "--load_checkpoint", source, "--resume_training", "True", "--profile", "True"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return resumed_dir, resume_step, result


def test_resume_reproduces_the_later_losses(full_run, resumed_run):
    output, _ = full_run
    metrics = read_metrics(output)
    resumed_dir, resume_step, _ = resumed_run
    resumed = read_metrics(resumed_dir)
    assert resumed[0]["step"] == resume_step + 1
    assert resumed[-1]["step"] == len(metrics)
    for before, after in zip(metrics[resume_step:], resumed):
        assert after["step"] == before["step"]
        assert after["loss"] == pytest.approx(before["loss"], rel=1e-3)
        assert after["lr"] == pytest.approx(before["lr"], rel=1e-5)


def test_profile_window_is_written(resumed_run):
    resumed_dir, _, result = resumed_run
    profile_dir = os.path.join(resumed_dir, "profile", "rank_0")
    written = [name for _, _, names in os.walk(profile_dir) for name in names]
    assert any(name.startswith("cpu_op") for name in written), written
    assert f"written to {profile_dir}" in result.stdout


def test_resume_from_folder_takes_the_newest(full_run, user_config, tmp_path):
    """--resume_training True with the checkpoint folder: nothing left to do after the final checkpoint."""
    output, _ = full_run
    resumed_dir = str(tmp_path / "again")
    result = run_cli(["run_mindformer.py", "--config", user_config, "--output_dir", resumed_dir,
                      "--load_checkpoint", os.path.join(output, "checkpoint"), "--resume_training", "True"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stdout and f"-2_{len(read_metrics(output)) // 2}.ckpt" in result.stdout


def test_tensorboard_events_hold_the_logged_scalars(full_run):
    """The YAML's tensorboard section: event files that TensorBoard's own reader loads, with train_metrics.jsonl's
    values (stored as float32) under MindFormers' tag names, and the run's config as text."""
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    output, _ = full_run
    events = event_accumulator.EventAccumulator(os.path.join(output, "tensorboard", "rank_0"),
                                                size_guidance={event_accumulator.SCALARS: 0})
    events.Reload()
    metrics = read_metrics(output)
    assert {"loss", "learning-rate", "grad-norm", "loss-scale", "iteration-time", "throughput", "mfu"} <= set(
        events.Tags()["scalars"])
    for tag, key in (("loss", "loss"), ("learning-rate", "lr"), ("grad-norm", "grad_norm")):
        logged = {event.step: event.value for event in events.Scalars(tag)}
        assert sorted(logged) == [m["step"] for m in metrics]
        for record in metrics:
            assert logged[record["step"]] == pytest.approx(record[key], rel=1e-6, abs=1e-12)
    assert "config/text_summary" in events.Tags()["tensors"]


@pytest.fixture(scope="module")
def report_of_two_runs(full_run, resumed_run, tmp_path_factory):
    from mindformers.tools.report import main  # pylint: disable=import-outside-toplevel
    folder = tmp_path_factory.mktemp("report")
    assert main([full_run[0], resumed_run[0], "--output", str(folder)]) == 0
    return folder


def test_report_of_two_runs_renders(report_of_two_runs, full_run, resumed_run):
    from PIL import Image  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel
    for name in ("loss", "lr", "grad_norm", "throughput", "mfu"):
        path = report_of_two_runs / f"{name}.png"
        assert path.stat().st_size > 10_000, name
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
        assert pixels.shape[0] >= 300 and pixels.shape[1] >= 600 and pixels.std() > 20, name  # drawn, not blank
        for color in ((31, 119, 180), (255, 127, 14)):  # each run's curve, in matplotlib's first two colours
            assert (np.abs(pixels - color).sum(-1) < 30).sum() > 100, (name, color)
    page = (report_of_two_runs / "index.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 5  # the plots travel inside the page
    for text in (os.path.basename(full_run[0]), os.path.basename(resumed_run[0]), "llama2_tiny", "CosineWithWarmUpLR",
                 f"{read_metrics(full_run[0])[-1]['loss']:.4f}"):
        assert text in page, text


def headless_browser():
    import shutil  # pylint: disable=import-outside-toplevel
    for name in ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "chrome-headless-shell"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_report_opens_in_a_headless_browser(report_of_two_runs, tmp_path):
    import subprocess  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel
    from PIL import Image  # pylint: disable=import-outside-toplevel
    browser = headless_browser()
    if browser is None:
        pytest.skip("no headless Chromium here (Debian: apt-get install chromium-headless-shell)")
    shot = tmp_path / "page.png"
    page = (report_of_two_runs / "index.html").as_uri()
    result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                             "--window-size=1000,2400", f"--screenshot={shot}", page],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    # the page's embedded plots were decoded and drawn: both runs' curve colours are on the screen
    for color in ((31, 119, 180), (255, 127, 14)):
        assert (np.abs(pixels - color).sum(-1) < 30).sum() > 1000, color  # more than the legend swatches
