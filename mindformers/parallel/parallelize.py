"""Tensor, sequence and expert parallelism applied to a built model in one step (stand-alone graphs, CPU).

Layers are built whole, as one process would hold them, and only declare how they split (`param_layout`).
`parallelize(model, groups)` then visits every cell and calls the hook of the layer types that split,
`cell.parallelize(groups)`: the layer keeps this rank's slice of its declared parameters, sets its local sizes
(heads, vocabulary rows, output features) and adds the collectives the split needs (copy / reduce / gather over the
model-parallel group, sequence scatter / gather, the expert exchange). A new model only declares layouts; a new
layer type that splits defines the one hook.

Sub-cells are visited before the cell holding them, so a hook sees its parts already split (attention reads its
position encoding's sliced ALiBi slopes). Adapters (LoRA, prefix tuning) are added to the plain model first and
split with their layer, so a model-parallel run starts from the single process' weights for the same seed. A
model built inside `initial_values_deferred()` (mindformers/models/modules/deferred_init.py) draws only each
rank's slice of its weights here, so a rank's build never holds the whole model.
"""
from mindformers.models.modules.deferred_init import materialize
from mindformers.parallel.groups import ParallelGroups


def parallelize(model, groups):
    """Split `model` (built whole, adapters added) for this rank of `groups`, in place; returns it. The groups are
    kept on the model (`parallel_groups_of`) for the train step's gradient reductions."""
    if getattr(model, "parallel_groups", None) is not None:
        raise RuntimeError(f"{type(model).__name__} is already parallelized")
    cells = [cell for _, cell in model.cells_and_names()]
    for cell in reversed(cells):  # the reverse of a pre-order walk: every cell after the cells it holds
        hook = getattr(cell, "parallelize", None)
        if callable(hook):
            hook(groups)
    recompute_added_cells(model)
    materialize(model)  # the weights nobody split, drawn whole
    model.parallel_groups = groups
    return model


def recompute_added_cells(model):
    """A layer marked for recomputation when it was built (recompute_config) recomputes the collectives its hook
    added too, as it did when layers placed them in their constructors."""
    for _, cell in model.cells_and_names():
        if getattr(cell, "_has_config_recompute", False):
            for child in cell.cells():
                if not getattr(child, "_has_config_recompute", False):
                    # what Cell.recompute does to the sub-cells it finds
                    child._recompute(False, True)  # pylint: disable=protected-access


def parallel_groups_of(network):
    """The groups `network` was parallelized for; without parallelize, a single process (no communication)."""
    return getattr(network, "parallel_groups", None) or ParallelGroups()
