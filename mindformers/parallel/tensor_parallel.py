"""Megatron-style tensor parallelism placed into the cells, for stand-alone graphs (CPU), by each layer's
`parallelize(groups)` hook (mindformers/parallel/parallelize.py runs them once the plain model is built).

The collectives are cells with a hand-written `bprop`, because the backward a layer needs is not the
collective's own: entering a column-parallel layer the input is copied (forward identity) and its gradient summed
over the model-parallel group; leaving a row-parallel layer the partial outputs are summed (forward all-reduce)
and the gradient passes through unchanged. MindSpore's CPU backend all-reduces with SUM only and gathers only over
the world group, so a gather is written as "pad my shard into place, then sum".

Each rank keeps the slice `np.split(full, model_parallel, axis=split_dim)[model_rank]` of a weight, where the
split dimension is the one the layer declares in `param_layout` (the declaration the Ascend shard strategies, the
layout file and the dry run read too), so an mp=2 model is exactly the mp=1 model with the same seed, cut up.
"""
import numpy as np
from mindspore import Tensor, nn, ops

from mindformers.models.modules.deferred_init import deferred_values
from mindformers.models.modules.layout import EXPERT_AXIS, MODEL_AXIS, declared_splits


class SumOverGroup(nn.Cell):
    """Holds one communication group and sums over it; without one (group None) the sum is this rank's own
    contribution."""

    def __init__(self, group):
        super().__init__()
        self.communicate = group is not None
        if self.communicate:
            self.all_reduce = ops.AllReduce(group=group)

    def sum_over_group(self, x):
        if self.communicate:
            return self.all_reduce(x)
        return x

    def construct(self, x):
        return self.sum_over_group(x)


class ModelParallelCollective(SumOverGroup):
    """A collective over the model-parallel group."""

    def __init__(self, groups):
        super().__init__(groups.model_group)
        self.shards = groups.model_parallel
        self.rank = groups.model_rank


class CopyToModelParallel(ModelParallelCollective):
    """Megatron's f: forward identity, backward sums the gradient over the model-parallel group."""

    def construct(self, x):
        return x

    def bprop(self, x, out, dout):
        return (self.sum_over_group(dout),)


class ReduceFromModelParallel(ModelParallelCollective):
    """Megatron's g: forward sums the partial results over the group, backward passes the gradient through."""

    def construct(self, x):
        return self.sum_over_group(x)

    def bprop(self, x, out, dout):
        return (dout,)


class PlaceAmongZeros(nn.Cell):
    """x as part `index` of `parts` equal parts along `axis`, zeros in the others: one rank's contribution to a
    gather composed as a sum (AllGather is world-only on MindSpore's CPU backend)."""

    def __init__(self, axis, parts, index):
        super().__init__()
        # Primitives: functional ops.pad / ops.zeros_like do not compile inside a cell with a bprop (MindSpore 2.10).
        self.zeros_like = ops.ZerosLike()
        self.concat = ops.Concat(axis=axis)
        self.parts = parts
        self.index = index

    def construct(self, x):
        zeros = self.zeros_like(x)
        pieces = ()
        for index in range(self.parts):
            pieces = pieces + ((x if index == self.index else zeros),)
        return self.concat(pieces)


class GatherFromModelParallel(ModelParallelCollective):
    """Concatenates every rank's shard along the last axis (shards are equal in size); backward keeps this
    rank's slice of the gradient, since every rank computes the same thing from the gathered tensor."""

    def __init__(self, groups):
        super().__init__(groups)
        self.place = PlaceAmongZeros(-1, self.shards, self.rank)

    def construct(self, x):
        return self.sum_over_group(self.place(x))

    def bprop(self, x, out, dout):
        width = x.shape[-1]
        return (dout[..., self.rank * width:(self.rank + 1) * width],)


def keep_local_shards(cell, groups):
    """Replace every parameter `cell` declares as split (param_layout) by this rank's slice of it: along its
    model-parallel dimension the model rank's part, along its expert-parallel dimension (the experts of a
    mixture-of-experts layer) the expert rank's part."""
    ranks = {MODEL_AXIS: (groups.model_parallel, groups.model_rank),
             EXPERT_AXIS: (groups.expert_parallel, groups.expert_rank)}
    for attr, declaration in cell.param_layout.items():
        param = cell._params.get(attr)  # pylint: disable=protected-access
        splits = [(dim,) + ranks[axis] for axis, dim in declared_splits(declaration).items() if ranks[axis][0] > 1]
        if param is None or not splits:
            continue
        for dim, parts, rank in splits:
            if param.shape[dim] % parts:
                raise ValueError(f"{param.name}: dimension {dim} of {tuple(param.shape)} does not split into "
                                 f"{parts} parts")
        local = deferred_values(param, splits)  # a weight not drawn yet draws only this slice
        param.set_data(Tensor(np.ascontiguousarray(local), dtype=param.dtype), True)


def local_size(size, groups):
    """The part of `size` (heads, features, vocabulary) one model-parallel rank holds."""
    return size // groups.model_parallel
