"""Build a network's structure without allocating its weights (the dry run of a 70B model on a laptop).

Inside `shape_only()`, layers create their weights through MindSpore's lazy `initializer`, and
`no_init_parameters` keeps every Parameter unallocated: shapes, dtypes and names exist, data does not.
"""
import contextlib

from mindspore import Parameter
from mindspore.common.initializer import initializer
from mindspore.nn.utils import no_init_parameters

_ACTIVE = [False]
_LOADED_AFTER_BUILD = [False]
_DEFERRED = [False]


@contextlib.contextmanager
def _raised(flag):
    flag[0] = True
    try:
        yield
    finally:
        flag[0] = False


def building_shapes_only():
    return _ACTIVE[0]


@contextlib.contextmanager
def shape_only():
    with _raised(_ACTIVE), no_init_parameters():
        yield


def initial_values_skipped():
    return _LOADED_AFTER_BUILD[0]


@contextlib.contextmanager
def weights_loaded_after_build():
    """Layers neither draw nor allocate their random-initialised weights (unallocated, as in the dry run): the
    caller loads a checkpoint that must hold every one of them right after the build (inference from
    --load_checkpoint), and loading gives each its memory. Drawing SmolLM2-135M's weights took most of predict's load
    time, and allocating zeros for them (then copying them into Parameters) ~1 s more."""
    with _raised(_LOADED_AFTER_BUILD), no_init_parameters():
        yield


def initial_values_are_deferred():
    return _DEFERRED[0]


@contextlib.contextmanager
def initial_values_deferred():
    """Layers built inside keep their normal initial weights undrawn (mindformers/models/modules/deferred_init.py):
    a model-parallel rank's parallelize draws only its slices, then the rest (`materialize`)."""
    with _raised(_DEFERRED), no_init_parameters():
        yield


def parameter_sharing(tensor, name, requires_grad=True):
    """A Parameter holding `tensor`'s memory. Parameter(tensor) copies the data (MindSpore 2.10 shares it only when
    the tensor's reference count is exactly 4, which Python 3.11 never gives there); an unallocated Parameter given
    the tensor with set_data shares it."""
    with no_init_parameters():
        param = Parameter(initializer("zeros", tensor.shape, tensor.dtype), name=name, requires_grad=requires_grad)
    return param.set_data(tensor)


def parameter_of(data, name, requires_grad=True):
    """A Parameter of `data`: a lazy initializer stays lazy (unallocated under no_init_parameters), a tensor's
    memory is shared (parameter_sharing), not copied as Parameter(tensor) would."""
    if data.has_init:
        return Parameter(data, name=name, requires_grad=requires_grad)
    return parameter_sharing(data, name, requires_grad)
