"""The global gradient norm used for clipping and overflow detection, over the whole model's gradients.

With CPU model parallelism each rank holds a shard of every split weight's gradient and a full copy of every
replicated one (norms; identical on all ranks of the group). The squares of the split gradients are summed over
the model-parallel group, the replicated ones are counted once, so every rank gets the norm of the mp=1 run and
clips and skips overflowing steps alike.
"""
import mindspore as ms
from mindspore import nn, ops

from mindformers.parallel.groups import current_groups


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
    """construct(grads) -> the norm of the full model's gradients; `split_dims` gives each gradient's parameter's
    model-parallel split dimension (None: replicated), in the order of `grads`."""

    def __init__(self, split_dims, groups=None):
        super().__init__()
        groups = groups or current_groups()
        self.split_across_ranks = groups.model_sharded and any(dim is not None for dim in split_dims)
        self.split = tuple(i for i, dim in enumerate(split_dims) if dim is not None)
        self.whole = tuple(i for i, dim in enumerate(split_dims) if dim is None)
        # Without a group (a single process computing one rank's share) the split squares stay this rank's own.
        self.communicate = self.split_across_ranks and groups.model_group is not None
        if self.communicate:
            self.all_reduce = ops.AllReduce(group=groups.model_group)

    def construct(self, grads):
        if not self.split_across_ranks:
            return global_norm(grads)
        total = ops.addn([square_sum(grads[i]) for i in self.split])
        if self.communicate:
            total = self.all_reduce(total)
        if self.whole:
            total = total + ops.addn([square_sum(grads[i]) for i in self.whole])
        return ops.sqrt(total)
