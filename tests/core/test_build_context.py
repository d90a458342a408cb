"""build_context's process-wide settings that depend on the kind of run."""
import os

import pytest

from mindformers.core.context import build_context
from mindformers.core.context.build_context import RUNTIME_CONF
from mindformers.tools import MindFormerConfig


@pytest.mark.parametrize("run_mode,layerwise,before,after", [
    ("predict", True, None, "graph_pipeline:False"),
    ("eval", True, "memory_tracker:True", "memory_tracker:True,graph_pipeline:False"),
    ("predict", True, "graph_pipeline:True", "graph_pipeline:True"),  # the user's own choice stays
    ("train", True, None, None),  # layerwise training keeps MindSpore's default
    ("predict", False, None, None),  # so does PyNative without layer graphs
])
def test_layerwise_inference_runs_its_graphs_in_the_calling_thread(tmp_path, monkeypatch, run_mode, layerwise,
                                                                   before, after):
    if before is None:
        monkeypatch.delenv(RUNTIME_CONF, raising=False)
    else:
        monkeypatch.setenv(RUNTIME_CONF, before)
    path = tmp_path / "run.yaml"
    path.write_text(f"run_mode: {run_mode}\ncontext:\n  mode: 1\n  device_target: CPU\n"
                    f"  layerwise_compile: {layerwise}\n")
    build_context(MindFormerConfig(str(path)))
    assert os.environ.get(RUNTIME_CONF) == after
