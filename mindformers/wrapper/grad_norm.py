"""The global gradient norm used for clipping and overflow detection, over the whole model's gradients.

With CPU model parallelism each rank holds a shard of every split weight's gradient and a full copy of every
replicated one (norms; identical on all ranks of the group). The squares of the split gradients are summed over
the model-parallel group, the replicated ones are counted once, so every rank gets the norm of the mp=1 run and
clips and skips overflowing steps alike. The experts of mixture-of-experts layers split over expert_parallel (and
their features over model_parallel): their squares are summed over the expert-model group.
"""
import mindspore as ms
from mindspore import nn, ops

from mindformers.models.modules.layout import EXPERT_AXIS, MODEL_AXIS, declared_splits
from mindformers.parallel.groups import ParallelGroups


def square_sum(x):
    """sum(x^2) in float32, reduced along the last axis first: a whole-tensor ReduceSum runs single-threaded
    on CPU and costs ~5x more on an embedding-sized gradient."""
    squares = ops.square(ops.cast(x, ms.float32))
    if squares.ndim > 1:
        squares = ops.sum(squares, -1)
    return ops.sum(squares)


def global_norm(grads):
    return ops.sqrt(ops.addn([square_sum(g) for g in grads]))


class GlobalGradNorm(nn.Cell):
    """construct(grads) -> the norm of the full model's gradients; `splits` gives each gradient's parameter's
    split (its param_layout declaration: a model-parallel dimension, None, or {mesh axis: dimension}), in the order
    of `grads`."""

    def __init__(self, splits, groups=ParallelGroups()):
        super().__init__()
        axes = [declared_splits(split) for split in splits]
        self.expert_split = tuple(i for i, a in enumerate(axes) if EXPERT_AXIS in a and groups.experts_sharded)
        self.split = tuple(i for i, a in enumerate(axes) if i not in self.expert_split and MODEL_AXIS in a
                           and groups.model_sharded)
        self.whole = tuple(i for i in range(len(axes)) if i not in self.expert_split and i not in self.split)
        self.split_across_ranks = bool(self.split or self.expert_split)
        # Without a group (a single process computing one rank's share) the split squares stay this rank's own.
        self.model_communicate = bool(self.split) and groups.model_group is not None
        if self.model_communicate:
            self.all_reduce = ops.AllReduce(group=groups.model_group)
        self.expert_communicate = bool(self.expert_split) and groups.expert_model_group is not None
        if self.expert_communicate:
            self.expert_all_reduce = ops.AllReduce(group=groups.expert_model_group)

    def construct(self, grads):
        if not self.split_across_ranks:
            return global_norm(grads)
        total = ops.zeros((), ms.float32)
        if self.split:
            split = ops.addn([square_sum(grads[i]) for i in self.split])
            if self.model_communicate:
                split = self.all_reduce(split)
            total = total + split
        if self.expert_split:
            experts = ops.addn([square_sum(grads[i]) for i in self.expert_split])
            if self.expert_communicate:
                experts = self.expert_all_reduce(experts)
            total = total + experts
        if self.whole:
            total = total + ops.addn([square_sum(grads[i]) for i in self.whole])
        return ops.sqrt(total)
