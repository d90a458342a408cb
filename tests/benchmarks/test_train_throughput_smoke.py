"""The training-throughput benchmark runs end to end on tiny shapes and prints its ratios (no timing asserted); ours
in graph mode and with layerwise compilation train to the same losses."""
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "benchmarks", "train_throughput.py")


def test_benchmark_prints_both_sides_and_a_ratio(tmp_path):
    env = dict(os.environ, GLOG_v="3", PYTHONWARNINGS="ignore")
    args = ["--layers", "1", "--hidden", "64", "--heads", "4", "--kv-heads", "2", "--vocab", "512", "--seq", "32",
            "--batch", "2", "--steps", "1", "--warmup", "1", "--gemm-sizes", "128", "--peak-sizes", "128",
            "--peak-rounds", "1", "--layerwise"]
    # cwd outside the checkout: MindSpore may drop rank_0/ or kernel_meta/ folders into the working directory.
    result = subprocess.run([sys.executable, SCRIPT] + args, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"^threads: \d+", out, re.M), out
    assert re.search(r"^ours .* [\d.]+ tokens/s, MFU [\d.]+% of \d+ GFLOP/s; CPU [\d.]+ s/step", out, re.M), out
    assert re.search(r"^GEMM peak used for MFU: \d+ GFLOP/s \(", out, re.M), out
    assert re.search(r"^GEMM per core .*: [\d.]+, [\d.]+ GFLOP/s; median [\d.]+, spread [\d.]+%$", out, re.M), out
    assert re.search(r"^theirs .* [\d.]+ tokens/s, MFU [\d.]+%", out, re.M), out
    losses = re.findall(r"^ours .* losses (\[.*\])$", out, re.M)
    assert len(losses) == 2 and losses[0] == losses[1], out
    assert re.search(r"^ratio ours layerwise/graph: \d+\.\d+$", out, re.M), out
    match = re.search(r"^ratio ours/theirs: (\d+\.\d+)$", out, re.M)
    assert match and float(match.group(1)) > 0, out
