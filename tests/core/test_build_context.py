"""build_context's CPU defaults, which the benchmarks share through cpu_run_settings."""
import mindspore as ms
import pytest

from mindformers.core.context import build_context
from mindformers.core.context.build_context import cpu_run_settings
from mindformers.tools import MindFormerConfig


@pytest.fixture(name="restored_context")
def restored_context_fixture():
    mode, synchronize = ms.get_context("mode"), ms.get_context("pynative_synchronize")
    yield
    ms.set_context(mode=mode, pynative_synchronize=synchronize)


def test_cpu_pynative_runs_ops_one_after_the_other():
    assert cpu_run_settings(ms.PYNATIVE_MODE) == {"mode": ms.PYNATIVE_MODE, "pynative_synchronize": True}
    assert cpu_run_settings(ms.GRAPH_MODE) == {"mode": ms.GRAPH_MODE}


@pytest.mark.usefixtures("restored_context")
@pytest.mark.parametrize("line,expected", [("", True), ("  pynative_synchronize: False\n", False)])
def test_a_cpu_pynative_run_synchronizes_unless_the_yaml_says_otherwise(tmp_path, line, expected):
    ms.set_context(pynative_synchronize=not expected)
    path = tmp_path / "run.yaml"
    path.write_text(f"context:\n  mode: 1\n  device_target: CPU\n{line}")
    build_context(MindFormerConfig(str(path)))
    assert ms.get_context("pynative_synchronize") is expected
