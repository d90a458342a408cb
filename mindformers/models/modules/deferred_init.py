"""Initial normal weights: the values, and the same values drawn later, only the part a rank keeps.

Every weight draws from a float32 stream of its own (numpy's Generator), seeded by one draw from numpy's global RNG
(which build_context seeds), so a seeded build is reproducible and takes a fraction of the time float64 draws cast
to float32 took (the bulk of building the 8-layer benchmark model).

A model-parallel rank builds the whole plain model and then keeps its slice of each split weight
(mindformers/parallel/parallelize.py). Drawing every whole weight first would make a rank's build peak at the
single-process model's size. Inside `initial_values_deferred()` (shape_only.py) a weight is built unallocated
(MindSpore's `no_init_parameters`) with a `DeferredNormal` that takes the weight's seed where the eager build would
have drawn it (so everything drawn later sees the same global stream); `draw` replays that weight's stream later, in
bounded chunks, and keeps only the requested slice.

A model's build draws its weights on worker threads (`draws_in_background`): numpy lets go of the GIL while it
draws, so the draws use every core and overlap the rest of the build; the seeds are still taken in build order, so
the values are those of a draw in line.
"""
import contextlib
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import mindspore as ms
from mindspore import Tensor
from mindspore.common.initializer import Initializer

CHUNK_VALUES = 1 << 22  # values drawn at a time while replaying (16 MB of float32)


def _rows_per_chunk(shape):
    return max(1, CHUNK_VALUES // max(1, math.prod(shape[1:])))


def weight_seed():
    """The seed of one weight's stream: one draw from numpy's global RNG."""
    return int(np.random.randint(0, np.iinfo(np.int64).max, dtype=np.int64))


def normal_rows(seed, std, shape, rows):
    """The first `rows` rows of the weight of `shape` whose values are N(0, std) drawn from `seed`'s stream, as
    float32 chunks: (first row, block) pairs. Drawing row by row chunk continues the one stream, so any cut of the
    rows is the cut of the whole."""
    generator = np.random.default_rng(seed)
    step = _rows_per_chunk(shape)
    for first in range(0, rows, step):
        block = generator.standard_normal((min(step, rows - first),) + tuple(shape[1:]), dtype=np.float32)
        block *= np.float32(std)
        yield first, block


_BACKGROUND = []  # (worker pool, pending draws) of the draws_in_background() in force, if one is


def _draw_normal(seed, std, values):
    np.random.default_rng(seed).standard_normal(dtype=np.float32, out=values)  # the same values as normal_rows'
    values *= np.float32(std)


@contextlib.contextmanager
def draws_in_background():
    """Inside, normal_values(..., in_background=True) hands its draw to a worker thread and returns the array it
    will fill; leaving waits for every draw (and raises the first failure). Nested uses join the outermost."""
    if _BACKGROUND:
        yield
        return
    pending = []
    with ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:
        _BACKGROUND.append((pool, pending))
        try:
            yield
        finally:
            _BACKGROUND.clear()
    for draw in pending:
        draw.result()


def normal_values(std, shape, in_background=False):
    """A whole weight's initial values (float32), from the next seed of the global RNG. With `in_background`,
    inside draws_in_background() the values are drawn on a worker thread: the caller must not read them (nor copy
    them) before that context ends."""
    values = np.empty(shape, np.float32)
    seed = weight_seed()
    if in_background and _BACKGROUND:
        pool, pending = _BACKGROUND[0]
        pending.append(pool.submit(_draw_normal, seed, std, values))
    else:
        _draw_normal(seed, std, values)
    return values


def host_tensor(values, dtype):
    """A Tensor of numpy `values` in `dtype`: float32 values wrapped without a copy (MindSpore's converting
    constructor copies element by element, seconds for the benchmark model's weights), others converted."""
    if values.dtype == np.float32 and dtype == ms.float32:
        return Tensor.from_numpy(values)
    return Tensor(values, dtype=dtype)


class DeferredNormal(Initializer):
    """normal_values(std, shape), drawn from the stream the eager build would have given this weight."""

    def __init__(self, shape, std):
        super().__init__()
        self.shape, self.std = tuple(shape), std
        self.stream_seed = weight_seed()  # not `seed`: Initializer has a property of that name

    def draw(self, splits=()):
        """The values, cut to part `index` of `parts` along `dim` for each (dim, parts, index) of `splits`; only
        rows up to the kept ones are drawn, and no more than a chunk of the whole at a time."""
        start, stop = 0, self.shape[0]
        for dim, parts, index in splits:
            if dim == 0:
                size = self.shape[0] // parts
                start, stop = index * size, (index + 1) * size
        pieces = []
        for first, block in normal_rows(self.stream_seed, self.std, self.shape, stop):
            count = len(block)
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
            param.set_data(host_tensor(deferred_values(param), param.dtype))
