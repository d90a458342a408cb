"""Parallel layout declarations: the one place that says how each weight splits over the parallel mesh.

A weight-bearing cell sets ``self.param_layout = {"weight": dim}`` where ``dim`` is the dimension of that
parameter divided across model-parallel ranks (None: replicated), or, for a weight split over more than one mesh
axis, ``{"w1": {MODEL_AXIS: 1, EXPERT_AXIS: 0}}`` (a mixture-of-experts weight: experts over expert_parallel, their
features over model_parallel). Checkpoint sharding, resharding, memory estimates and operator shard strategies all
read these declarations through `parameter_layouts` / `parameter_splits`, never a table of their own.
"""
from typing import Dict, Optional

MODEL_AXIS = "model_parallel"
EXPERT_AXIS = "expert_parallel"
AXES = (MODEL_AXIS, EXPERT_AXIS)


def declared_splits(declaration) -> Dict[str, int]:
    """{mesh axis: dimension} of one param_layout value (an int is a model-parallel split; None: replicated)."""
    if declaration is None:
        return {}
    if isinstance(declaration, dict):
        return {axis: dim for axis, dim in declaration.items() if dim is not None}
    return {MODEL_AXIS: declaration}


def parameter_splits(network) -> Dict[str, Dict[str, int]]:
    """Map every parameter name of `network` to {mesh axis: the dimension split over it} ({}: replicated)."""
    splits = {}
    for _, cell in network.cells_and_names():
        declared = getattr(cell, "param_layout", {})
        for attr, param in cell._params.items():  # pylint: disable=protected-access
            if param is not None:
                splits[param.name] = declared_splits(declared.get(attr))
    return splits


def parameter_layouts(network) -> Dict[str, Optional[int]]:
    """Map every parameter name of `network` to its model-parallel split dimension (None: replicated)."""
    return {name: splits.get(MODEL_AXIS) for name, splits in parameter_splits(network).items()}


def expert_parameters(network):
    """Names of the parameters split over expert_parallel (the experts of mixture-of-experts layers)."""
    return {name for name, splits in parameter_splits(network).items() if EXPERT_AXIS in splits}
