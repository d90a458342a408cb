"""The global gradient norm used for clipping and overflow detection, over the whole model's gradients.

With CPU model parallelism each rank holds a shard of every split weight's gradient and a full copy of every
replicated one (norms; identical on all ranks of the group). The squares of the split gradients are summed over
the model-parallel group, the replicated ones are counted once, so every rank gets the norm of the mp=1 run and
clips and skips overflowing steps alike. The experts of mixture-of-experts layers split over expert_parallel (and
their features over model_parallel): their squares are summed over the expert-model group.
"""
import mindspore as ms
from mindspore import nn, ops

from mindformers.kernels import cpu_square_sum
from mindformers.models.modules.layout import EXPERT_AXIS, MODEL_AXIS, declared_splits
from mindformers.parallel.groups import ParallelGroups


def square_sum(x):
    """sum(x^2) in float32, reduced along the last axis first: a whole-tensor ReduceSum runs single-threaded
    on CPU and costs ~5x more on an embedding-sized gradient. An empty tensor gives 0: MindSpore's CPU ReduceSum over
    no elements returns whatever its output buffer held (a previous sum, seen in the test suite)."""
    if x.size == 0:
        return ops.zeros((), ms.float32)
    squares = ops.square(ops.cast(x, ms.float32))
    if squares.ndim > 1:
        squares = ops.sum(squares, -1)
    return ops.sum(squares)


def square_sums(grads):
    """The sum of square_sum over `grads`, composed of MindSpore's ops (any dtype, any device)."""
    return ops.addn([square_sum(g) for g in grads])


def global_norm(grads):
    return ops.sqrt(square_sums(grads))


class GlobalGradNorm(nn.Cell):
    """construct(grads) -> the norm of the full model's gradients; `splits` gives each gradient's parameter's
    split (its param_layout declaration: a model-parallel dimension, None, or {mesh axis: dimension}), in the order
    of `grads`; `dtypes` their dtypes, where known: all float32 on CPU, one kernel reads every gradient once
    (kernels/cpu_square_sum.py)."""

    def __init__(self, splits, groups=ParallelGroups(), dtypes=()):
        super().__init__()
        self.fused_square_sum = cpu_square_sum.CpuSquareSum() if dtypes and cpu_square_sum.available(dtypes) else None
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

    def square_sum(self, grads):
        if self.fused_square_sum is not None:
            return self.fused_square_sum(grads)
        return square_sums(grads)

    def construct(self, grads):
        if not self.split_across_ranks:
            return ops.sqrt(self.square_sum(grads))
        total = ops.zeros((), ms.float32)
        if self.split:
            split = self.square_sum(tuple(grads[i] for i in self.split))
            if self.model_communicate:
                split = self.all_reduce(split)
            total = total + split
        if self.expert_split:
            experts = self.square_sum(tuple(grads[i] for i in self.expert_split))
            if self.expert_communicate:
                experts = self.expert_all_reduce(experts)
            total = total + experts
        if self.whole:
            total = total + self.square_sum(tuple(grads[i] for i in self.whole))
        return ops.sqrt(total)
