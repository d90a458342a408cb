"""The LoRA vs full fine-tuning benchmark runs end to end on tiny shapes and prints its ratios (none asserted)."""
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "benchmarks", "lora_vs_full.py")


def test_benchmark_prints_both_sides_and_ratios(tmp_path):
    env = dict(os.environ, GLOG_v="3", PYTHONWARNINGS="ignore")
    args = ["--layers", "1", "--hidden", "64", "--heads", "4", "--vocab", "512", "--seq", "16", "--batch", "2",
            "--steps", "1", "--warmup", "0", "--mode", "pynative"]
    result = subprocess.run([sys.executable, SCRIPT] + args, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    full = re.search(r"^full trainable ([\d,]+) of ([\d,]+) parameters: [\d.]+ ms/step, peak \d+ MiB$", out, re.M)
    lora = re.search(r"^lora trainable ([\d,]+) of ([\d,]+) parameters: [\d.]+ ms/step, peak \d+ MiB$", out, re.M)
    assert full and lora, out
    assert int(lora.group(1).replace(",", "")) < int(full.group(1).replace(",", ""))
    assert re.search(r"^ratio lora/full: step time \d+\.\d\d, peak memory \d+\.\d\d$", out, re.M), out
