"""The mixture-of-experts throughput benchmark runs end to end on tiny shapes: both sides start from the same
weights (equal first losses) and a ratio is printed (no timing asserted)."""
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "benchmarks", "moe_throughput.py")


def test_benchmark_prints_both_sides_and_a_ratio(tmp_path):
    env = dict(os.environ, GLOG_v="3", PYTHONWARNINGS="ignore")
    args = ["--layers", "1", "--hidden", "32", "--heads", "4", "--kv-heads", "2", "--ffn", "64", "--experts", "4",
            "--vocab", "128", "--seq", "16", "--steps", "1", "--warmup", "0"]
    result = subprocess.run([sys.executable, SCRIPT] + args, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    first = re.search(r"^first step loss \(same weights\): ours ([\d.]+), theirs ([\d.]+)$", out, re.M)
    assert first and abs(float(first.group(1)) - float(first.group(2))) < 1e-4, out
    assert re.search(r"^ours .* [\d.]+ tokens/s", out, re.M) and re.search(r"^theirs .* [\d.]+ tokens/s", out, re.M)
    match = re.search(r"^ratio ours/theirs: (\d+\.\d+)$", out, re.M)
    assert match and float(match.group(1)) > 0, out
