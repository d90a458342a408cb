"""Build a network's structure without allocating its weights (the dry run of a 70B model on a laptop).

Inside `shape_only()`, layers create their weights through MindSpore's lazy `initializer`, and
`no_init_parameters` keeps every Parameter unallocated: shapes, dtypes and names exist, data does not.
"""
import contextlib

from mindspore.nn.utils import no_init_parameters

_ACTIVE = [False]


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
