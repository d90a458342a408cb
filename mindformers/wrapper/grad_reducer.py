"""Data-parallel averaging inside the train step: gradients and the logged loss, all-reduced over ranks.

Graph-mode friendly: a Cell whose construct is a fixed AllReduce per gradient. With one rank (no
communication initialised) it is the identity, so single-process runs compile the same graph as before.
"""
import mindspore as ms
from mindspore import nn, ops

from mindformers.parallel.world import rank_and_size


class DataParallelReducer(nn.Cell):
    """construct(grads, loss) -> (grads averaged over ranks, loss averaged over ranks)."""

    def __init__(self, group_size=None):
        super().__init__(auto_prefix=False)
        self.group_size = rank_and_size()[1] if group_size is None else int(group_size)
        # Under Ascend semi-auto parallel MindSpore inserts the gradient all-reduce itself.
        stand_alone = ms.get_auto_parallel_context("parallel_mode") == ms.ParallelMode.STAND_ALONE
        self.reduce = self.group_size > 1 and stand_alone
        if self.reduce:
            self.all_reduce = ops.AllReduce()  # sum over the world group; every rank gets the same result
        self.scale = 1.0 / self.group_size

    def construct(self, grads, loss):
        if not self.reduce:
            return grads, loss
        # Averaging before the global norm keeps clipping and overflow detection identical on every rank:
        # a non-finite gradient anywhere makes every rank skip the step.
        grads = tuple(self.all_reduce(g) * ops.cast(self.scale, g.dtype) for g in grads)
        loss = self.all_reduce(loss) * ops.cast(self.scale, loss.dtype)
        return grads, loss
