"""Data-parallel averaging inside the train step: gradients and the logged loss, all-reduced over the
data-parallel group (the ranks holding the same model-parallel shards, mindformers/parallel/groups.py).

Graph-mode friendly: a Cell whose construct is a fixed AllReduce per gradient. Without a data-parallel group
(one process, or data_parallel 1) it is the identity, so single-process runs compile the same graph as before.
"""
import mindspore as ms
from mindspore import nn, ops

from mindformers.parallel.groups import current_groups


class DataParallelReducer(nn.Cell):
    """construct(grads, loss) -> (grads averaged over the data-parallel group, loss averaged likewise)."""

    def __init__(self, groups=None):
        super().__init__(auto_prefix=False)
        groups = groups or current_groups()
        # Under Ascend semi-auto parallel MindSpore inserts the gradient all-reduce itself.
        stand_alone = ms.get_auto_parallel_context("parallel_mode") == ms.ParallelMode.STAND_ALONE
        self.reduce = groups.data_group is not None and stand_alone
        if self.reduce:
            self.all_reduce = ops.AllReduce(group=groups.data_group)  # sum; every rank of the group gets the result
        self.scale = 1.0 / groups.data_parallel

    def construct(self, grads, loss):
        if not self.reduce:
            return grads, loss
        # Averaging before the global norm keeps clipping and overflow detection identical on every rank:
        # a non-finite gradient anywhere makes every rank skip the step.
        grads = tuple(self.all_reduce(g) * ops.cast(self.scale, g.dtype) for g in grads)
        loss = self.all_reduce(loss) * ops.cast(self.scale, loss.dtype)
        return grads, loss
