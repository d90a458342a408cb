"""context.enable_compile_cache through run_mindformer.py: a second run of the same config reuses the first run's
cache folder (same losses), and a config that compiles differently (half the heads: the same parameter shapes, so
MindSpore's own cache would hand back the old graph) gets a folder of its own and its own losses. The first step's
compile time is logged apart from its run time."""
import os

import pytest

from tests.e2e.helpers import read_metrics, run_cli, write_user_config


@pytest.fixture(scope="module")
def cache_runs(tmp_path_factory, sp_model_file, wiki_mindrecord):
    root = tmp_path_factory.mktemp("compile_cache")
    cache = root / "cache"
    runs = {}
    for name, heads in (("first", 4), ("second", 4), ("fewer_heads", 2)):
        sizes = dict(vocab_size=600, seq_length=32, num_layers=1, hidden_size=64, intermediate_size=128,
                     num_heads=heads, n_kv_heads=heads)
        config = write_user_config(
            root / f"{name}.yaml", "llama2/pretrain_llama2_tiny.yaml", sp_model_file, sizes=sizes, seed=1,
            context={"mode": 0, "enable_compile_cache": True, "compile_cache_path": str(cache)},
            runner_config={"epochs": 1, "batch_size": 8},
            train_dataset={"data_loader": {"dataset_dir": wiki_mindrecord}},
            callbacks=[{"type": "MFLossMonitor", "per_print_times": 100, "device_peak_tflops": 1.0}])
        output = root / name
        result = run_cli(["run_mindformer.py", "--config", config, "--run_mode", "train", "--output_dir", output])
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        runs[name] = (read_metrics(output), result.stdout + result.stderr, sorted(os.listdir(cache)))
    return runs


def test_second_run_reuses_the_cache_and_a_changed_config_compiles_afresh(cache_runs):
    first, first_log, after_first = cache_runs["first"]
    second, second_log, after_second = cache_runs["second"]
    changed, _, after_changed = cache_runs["fewer_heads"]
    assert len(after_first) == 1 and after_second == after_first
    assert "(new)" in first_log and "(reused)" in second_log
    assert [m["loss"] for m in second] == [m["loss"] for m in first]
    assert len(after_changed) == 2
    # A stale graph would give the first run's losses exactly; half the heads train differently.
    gaps = [abs(a["loss"] - b["loss"]) for a, b in zip(changed, first)]
    assert len(gaps) >= 2 and max(gaps) > 1e-3, gaps


def test_first_step_logs_compile_time_apart(cache_runs):
    metrics, log, _ = cache_runs["first"]
    assert metrics[0]["compile_time"] > 0
    assert "compile_time" not in metrics[1]
    assert "graph compilation +" in log
