"""The attention-kernel benchmark runs end to end on tiny shapes (GQA) and prints each side's time and the ratios,
the sides' gradients agreeing (no timing asserted)."""
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "benchmarks", "attention_kernel.py")


def test_attention_benchmark_prints_times_and_ratios(tmp_path):
    from mindformers.kernels import build  # pylint: disable=import-outside-toplevel
    if build.compiler() is None or build.onednn_dir() is None:
        pytest.skip("no C++ compiler or no oneDNN: the fused kernel is optional and not built on this host")
    args = ["--seqs", "40", "--heads", "4", "--kv-heads", "2", "--head-dim", "8", "--steps", "1",
            "--no-composed"]  # the composed path's parity is tested in tests/models; one compile fewer
    result = subprocess.run([sys.executable, SCRIPT] + args, cwd=tmp_path, capture_output=True, text=True,
                            timeout=600, env=dict(os.environ, GLOG_v="3", PYTHONWARNINGS="ignore"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"^seq +40: fused kernel \d+ ms, torch SDPA \d+ ms; torch SDPA/fused \d+\.\d\d; "
                     r"gradient sums agree$", result.stdout, re.M), result.stdout
