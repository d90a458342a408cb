"""Initial weights drawn when they are needed, only the part a rank keeps, with the values an eager build draws.

A model-parallel rank builds the whole plain model and then keeps its slice of each split weight
(mindformers/parallel/parallelize.py). Drawing every whole weight first would make a rank's build peak at the
single-process model's size. Inside `initial_values_deferred()` (shape_only.py) a weight is built unallocated
(MindSpore's `no_init_parameters`) with a `DeferredNormal` that remembers numpy's global RNG state at the point
where the eager build would have drawn it, and advances the RNG past those values (in bounded chunks), so
everything drawn later sees the same stream. `draw` replays that stream later and keeps only the requested slice.
"""
import math

import numpy as np
from mindspore import Tensor
from mindspore.common.initializer import Initializer

CHUNK_VALUES = 1 << 22  # values drawn at a time while advancing or replaying (32 MB of float64)


def _rows_per_chunk(shape):
    return max(1, CHUNK_VALUES // max(1, math.prod(shape[1:])))


class DeferredNormal(Initializer):
    """np.random.normal(0, std, shape) as float32, drawn from the global RNG where this initializer was made."""

    def __init__(self, shape, std):
        super().__init__()
        self.shape, self.std = tuple(shape), std
        self.state = np.random.get_state()
        rows = _rows_per_chunk(self.shape)
        for first in range(0, self.shape[0], rows):  # advance the global stream past these values
            np.random.normal(0.0, std, size=(min(rows, self.shape[0] - first),) + self.shape[1:])

    def draw(self, splits=()):
        """The values, cut to part `index` of `parts` along `dim` for each (dim, parts, index) of `splits`; only
        rows up to the kept ones are drawn, and no more than a chunk of the whole at a time."""
        rng = np.random.RandomState()
        rng.set_state(self.state)
        start, stop = 0, self.shape[0]
        for dim, parts, index in splits:
            if dim == 0:
                size = self.shape[0] // parts
                start, stop = index * size, (index + 1) * size
        rows, pieces = _rows_per_chunk(self.shape), []
        for first in range(0, stop, rows):
            count = min(rows, stop - first)
            block = rng.normal(0.0, self.std, size=(count,) + self.shape[1:]).astype(np.float32)
            if first + count <= start:
                continue
            block = block[max(0, start - first):]
            for dim, parts, index in splits:
                if dim != 0:
                    block = np.split(block, parts, axis=dim)[index]
            pieces.append(block)
        return np.concatenate(pieces, 0)

    def _initialize(self, arr):
        arr[...] = self.draw()


def deferred_values(param, splits=()):
    """The part `splits` of `param`'s values as numpy: drawn now when deferred, else read and cut."""
    if param.has_init and isinstance(param.init, DeferredNormal):
        return param.init.draw(splits)
    local = param.asnumpy()
    for dim, parts, index in splits:
        local = np.split(local, parts, axis=dim)[index]
    return local


def materialize(network):
    """Give every parameter of `network` still undrawn its values (the whole of it)."""
    for param in network.get_parameters():
        if param.has_init:
            param.set_data(Tensor(deferred_values(param), dtype=param.dtype))
