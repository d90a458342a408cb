"""Expert parallelism written into the mixture-of-experts layer, for stand-alone graphs (CPU), with the collectives
MindSpore's CPU backend has: AllReduce (SUM) over sub-groups. There is no AllToAll, and AllGather works only over
the world group, so tokens travel by "pad my rows into place, then sum over the group".

Each rank of an expert group (expert_parallel ranks sharing a model-parallel index, mindformers/parallel/groups.py)
routes its own tokens, then every rank sees the group's tokens (GatherFromExpertGroup) and runs them through the
experts it holds; each rank's result for the group's tokens is partial (its experts, and with model_parallel its
slice of their features), so the partials are summed over the expert-model group and each rank keeps its own rows
(ReduceToExpertGroup). The backward of each is the other's forward over the swapped group: the transpose of a
gather is a sum that keeps one's own rows, and the transpose of summing partials is gathering the gradient.

With expert_parallel 1 and model_parallel 1 both cells are the identity, so a single process compiles no
collective; with expert_parallel 1 and model_parallel > 1 they are Megatron's copy-to / reduce-from the
model-parallel group.
"""
from mindspore import nn, ops

from mindformers.parallel.tensor_parallel import PlaceAmongZeros, SumOverGroup


class _ExpertCollective(nn.Cell):
    def __init__(self, groups):
        super().__init__()
        self.parts = groups.expert_parallel
        self.rank = groups.expert_rank
        self.gather_group = groups.expert_group is not None
        self.sum_group = groups.expert_model_group is not None
        if self.gather_group:
            self.gather_sum = ops.AllReduce(group=groups.expert_group)
        if self.sum_group:
            self.partial_sum = ops.AllReduce(group=groups.expert_model_group)
        self.in_place = PlaceAmongZeros(0, self.parts, self.rank)  # x padded to the group's rows at my place

    def gather(self, x):
        """Every rank's rows, in group order (a no-op without an expert group)."""
        padded = x if self.parts == 1 else self.in_place(x)
        if self.gather_group:
            return self.gather_sum(padded)
        return padded

    def sum_own_rows(self, y):
        """The sum of every rank's `y` over the expert-model group, this rank's rows of it."""
        if self.sum_group:
            y = self.partial_sum(y)
        if self.parts == 1:
            return y
        rows = y.shape[0] // self.parts
        return y[self.rank * rows:(self.rank + 1) * rows]


class GatherFromExpertGroup(_ExpertCollective):
    """(rows, ...) -> (expert_parallel * rows, ...): the rows of every rank of the expert group, in group order."""

    def construct(self, x):
        return self.gather(x)

    def bprop(self, x, out, dout):
        return (self.sum_own_rows(dout),)


class ReduceToExpertGroup(_ExpertCollective):
    """(expert_parallel * rows, ...) partial results for the group's rows -> this rank's rows of their sum."""

    def construct(self, y):
        return self.sum_own_rows(y)

    def bprop(self, y, out, dout):
        return (self.gather(dout),)


class SumOverDataParallel(SumOverGroup):
    """Sums a statistic of each rank's batch over the data-parallel group (the router's load counts and mean
    probabilities, so the load-balancing loss is that of the global batch, as one process would compute it).

    Every rank adds the same function of the sum to its loss and the gradients are averaged over the group, so the
    backward is a sum too: the transpose of an all-reduce whose result every rank uses."""

    def __init__(self, groups):
        super().__init__(groups.data_group)

    def bprop(self, x, out, dout):
        return (self.sum_over_group(dout),)
