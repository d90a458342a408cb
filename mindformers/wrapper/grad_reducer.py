"""Data-parallel averaging inside the train step: gradients and the logged loss, all-reduced over the
data-parallel group (the ranks holding the same model-parallel shards, mindformers/parallel/groups.py).

The experts of mixture-of-experts layers split over expert_parallel: a rank's expert gradients already hold the
contributions of its whole expert group's tokens (the token exchange's backward brought them), so they are summed
over the ranks holding the same experts (the expert-data group) and divided by data_parallel, like the rest.

Graph-mode friendly: a Cell whose construct is a fixed AllReduce per gradient. Without a data-parallel group
(one process, or data_parallel 1) it is the identity, so single-process runs compile the same graph as before.
"""
import mindspore as ms
from mindspore import nn, ops

from mindformers.parallel.groups import ParallelGroups


class DataParallelReducer(nn.Cell):
    """construct(grads, loss) -> (grads averaged over the data-parallel group, loss averaged likewise)."""

    def __init__(self, groups=ParallelGroups(), experts=()):
        """`experts`: per gradient, whether its parameter is split over expert_parallel."""
        super().__init__(auto_prefix=False)
        # Under Ascend semi-auto parallel MindSpore inserts the gradient all-reduce itself.
        stand_alone = ms.get_auto_parallel_context("parallel_mode") == ms.ParallelMode.STAND_ALONE
        self.reduce = groups.data_group is not None and stand_alone
        if self.reduce:
            self.all_reduce = ops.AllReduce(group=groups.data_group)  # sum; every rank of the group gets the result
        self.scale = 1.0 / groups.data_parallel
        self.experts = tuple(bool(e) and groups.experts_sharded for e in experts)
        self.reduce_experts = self.reduce and any(self.experts) and groups.expert_data_group is not None
        if self.reduce_experts:
            self.expert_all_reduce = ops.AllReduce(group=groups.expert_data_group)

    def construct(self, grads, loss):
        if not self.reduce:
            return grads, loss
        # Averaging before the global norm keeps clipping and overflow detection identical on every rank:
        # a non-finite gradient anywhere makes every rank skip the step.
        if not any(self.experts):
            grads = tuple(self.all_reduce(g) * ops.cast(self.scale, g.dtype) for g in grads)
        else:
            reduced = ()
            for index in range(len(grads)):
                grad = grads[index]
                if not self.experts[index]:
                    grad = self.all_reduce(grad)
                elif self.reduce_experts:
                    grad = self.expert_all_reduce(grad)
                reduced = reduced + (grad * ops.cast(self.scale, grad.dtype),)
            grads = reduced
        loss = self.all_reduce(loss) * ops.cast(self.scale, loss.dtype)
        return grads, loss
