"""benchmarks/convert_memory.py runs end to end on a tiny checkpoint and prints its ratio (no timing asserts)."""
from tests.e2e.helpers import run_cli


def test_convert_memory_smoke():
    result = run_cli(["benchmarks/convert_memory.py", "--smoke", "--no_reference"], timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "peak RSS / largest tensor:" in result.stdout
    assert "MB/s" in result.stdout
