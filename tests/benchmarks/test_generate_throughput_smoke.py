"""The generation benchmark runs end to end on tiny shapes and prints its ratios (no timing asserted)."""
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "benchmarks", "generate_throughput.py")


def test_generate_benchmark_smoke(tmp_path):
    pytest.importorskip("transformers")
    args = ["--layers", "1", "--hidden", "64", "--heads", "4", "--vocab", "256", "--prompt", "8", "--new", "4",
            "--batches", "2", "--repeat", "1", "--without-transposed"]
    result = subprocess.run([sys.executable, SCRIPT] + args, cwd=tmp_path, capture_output=True, text=True,
                            timeout=600, env=dict(os.environ, GLOG_v="3", PYTHONWARNINGS="ignore"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"^ours   batch 2: time to first token [\d.]+ ms, decode [\d.]+ tokens/s", out, re.M), out
    assert re.search(r"^theirs batch 2: time to first token [\d.]+ ms, decode [\d.]+ tokens/s", out, re.M), out
    assert "same greedy tokens batch 2: True" in out
    assert re.search(r"^ratio decode ours/theirs batch 2: \d+\.\d+$", out, re.M), out
    assert re.search(r"^a decode step reads [\d.]+ MiB of weights; a matrix-vector product over as many bytes streams "
                     r"[\d.]+ GB/s$", out, re.M), out
    assert re.search(r"^weights read batch 2: ours [\d.]+ GB/s, theirs [\d.]+ GB/s; decode ceiling batch 2: "
                     r"[\d.]+ x theirs$", out, re.M), out
    assert re.search(r"^ours without copies batch 2: .* decode [\d.]+ tokens/s; ratio decode with/without copies: "
                     r"\d+\.\d+$", out, re.M), out
