"""Build a network's structure without allocating its weights (the dry run of a 70B model on a laptop).

Inside `shape_only()`, layers create their weights through MindSpore's lazy `initializer`, and
`no_init_parameters` keeps every Parameter unallocated: shapes, dtypes and names exist, data does not.
"""
import contextlib

from mindspore.nn.utils import no_init_parameters

_ACTIVE = [False]
_LOADED_AFTER_BUILD = [False]


def building_shapes_only():
    return _ACTIVE[0]


@contextlib.contextmanager
def shape_only():
    _ACTIVE[0] = True
    try:
        with no_init_parameters():
            yield
    finally:
        _ACTIVE[0] = False


def initial_values_skipped():
    return _LOADED_AFTER_BUILD[0]


@contextlib.contextmanager
def weights_loaded_after_build():
    """Layers do not draw random initial weights (zeros stand in): the caller loads a checkpoint that must hold
    every one of them right after the build (inference from --load_checkpoint). Drawing SmolLM2-135M's weights
    took most of predict's load time."""
    _LOADED_AFTER_BUILD[0] = True
    try:
        yield
    finally:
        _LOADED_AFTER_BUILD[0] = False
