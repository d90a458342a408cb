"""Index ranges (0 .. n-1 and the like) as constants built at trace time from static shapes.

MindSpore 2.10's graph mode on CPU compiles `ops.arange` as a dynamic-shape op even when its bounds are Python
ints, which makes every graph that contains it slower to compile (a tiny grad: 91 s with ops.arange against 11 s
with constants) and to run. The shapes here are known when the graph is traced, so numpy builds the values once.
"""
import numpy as np
import mindspore as ms
from mindspore import ops


@ops.constexpr
def int_range(start, stop, shape, step=1):
    """np.arange(start, stop, step) as an int32 constant reshaped to `shape` (-1 allowed)."""
    return ms.Tensor(np.arange(start, stop, step, dtype=np.int32).reshape(shape))
