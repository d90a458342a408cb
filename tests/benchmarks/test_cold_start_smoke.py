"""The cold-start benchmark runs end to end on tiny shapes (one layer count, both modes of ours) and prints its
ratios (no timing asserted): every side reaches the same kind of first step, and ours gives one loss in graph mode,
with layerwise compilation, and on the cached second run."""
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "benchmarks", "cold_start.py")


def test_cold_start_prints_each_run_and_the_ratios(tmp_path):
    args = ["--layers", "1", "--hidden", "64", "--heads", "4", "--vocab", "512", "--seq", "16", "--batch", "1",
            "--modes", "graph", "layerwise"]
    result = subprocess.run([sys.executable, SCRIPT] + args, cwd=tmp_path, capture_output=True, text=True,
                            timeout=900, env=dict(os.environ, GLOG_v="3", PYTHONWARNINGS="ignore"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    losses = dict(re.findall(r"^(ours(?: layerwise)?, 1 layers(?:, cache: \w+)?) .* to first step +[\d.]+ s .* "
                             r"loss ([\d.]+)(?: \| 1 layer graphs traced in [\d.]+ s \| second step [\d.]+ s)?$",
                             out, re.M))
    assert len(losses) == 4 and len(set(losses.values())) == 1, out
    assert re.search(r"^theirs, 1 layers .* to first step +[\d.]+ s", out, re.M), out
    assert re.search(r"^ratio ours/theirs to first step, 1 layers: \d+\.\d\d$", out, re.M), out
    assert re.search(r"^ratio second/first run with compile cache, 1 layers: \d+\.\d\d", out, re.M), out
    assert re.search(r"^ratio ours layerwise/theirs to first step, 1 layers: \d+\.\d\d$", out, re.M), out


def test_cold_start_compares_layer_counts_beyond_one_steady_step(tmp_path):
    args = ["--layers", "1", "2", "--hidden", "64", "--heads", "4", "--vocab", "512", "--seq", "16", "--batch", "1",
            "--modes", "layerwise"]
    result = subprocess.run([sys.executable, SCRIPT] + args, cwd=tmp_path, capture_output=True, text=True,
                            timeout=900, env=dict(os.environ, GLOG_v="3", PYTHONWARNINGS="ignore"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"^ratio ours layerwise 2/1 layers: to first step \d+\.\d\d \(CPU \d+\.\d\d\), beyond one "
                     r"steady step \d+\.\d\d$", result.stdout, re.M), result.stdout
