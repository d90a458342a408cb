"""Parallel layout declarations: the one place that says how each weight splits over model_parallel.

A weight-bearing cell sets ``self.param_layout = {"weight": dim}`` where ``dim`` is the dimension of
that parameter divided across model-parallel ranks (None: replicated). Checkpoint sharding,
resharding, memory estimates and operator shard strategies all read these declarations through
`parameter_layouts`, never a table of their own.
"""
from typing import Dict, Optional


def parameter_layouts(network) -> Dict[str, Optional[int]]:
    """Map every parameter name of `network` to its model-parallel split dimension (None: replicated)."""
    layouts = {}
    for _, cell in network.cells_and_names():
        declared = getattr(cell, "param_layout", {})
        for attr, param in cell._params.items():  # pylint: disable=protected-access
            if param is not None:
                layouts[param.name] = declared.get(attr)
    return layouts
