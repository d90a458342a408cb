"""Sequence parallelism (Megatron's, with tensor parallelism) for stand-alone graphs (CPU): between the tensor-parallel
regions each model-parallel rank keeps only its slice of the sequence (axis 1 of (batch, seq, hidden)), so the
norms, residual adds and the activations they keep cost 1/model_parallel per rank.

Three cells move the hidden states between the two layouts; each one's backward is another one's forward:

- ScatterToSequenceParallel: whole sequence -> this rank's slice (after the embeddings); backward all-gathers.
- GatherFromSequenceParallel: slices -> whole sequence (before the column-parallel projections); backward
  reduce-scatters (each rank's gradient is a partial sum from its own heads / features).
- ReduceScatterToSequenceParallel: partial sums of the whole sequence -> this rank's slice of their sum (after the
  row-parallel projections); backward all-gathers.

MindSpore's CPU backend has no ReduceScatter and gathers only over the world group, so both are composed from
AllReduce (SUM): a gather places this rank's slice among zeros and sums; a reduce-scatter sums and keeps the rank's
slice. Without a group (a single process computing one rank's share) the sum is the rank's own contribution.
"""
from mindformers.parallel.tensor_parallel import ModelParallelCollective, PlaceAmongZeros

SEQUENCE_AXIS = 1


class _SequenceCollective(ModelParallelCollective):
    """Slicing and gathering along the sequence axis of the model-parallel group."""

    def __init__(self, groups):
        super().__init__(groups)
        self.place = PlaceAmongZeros(SEQUENCE_AXIS, self.shards, self.rank)

    def own_slice(self, x):
        """This rank's equal part of x along the sequence axis."""
        size = x.shape[SEQUENCE_AXIS] // self.shards
        return x[:, self.rank * size:(self.rank + 1) * size]

    def gather(self, x):
        """Every rank's slice joined along the sequence axis: mine in place, zeros elsewhere, summed."""
        return self.sum_over_group(self.place(x))

    def reduce_scatter(self, x):
        return self.own_slice(self.sum_over_group(x))


class ScatterToSequenceParallel(_SequenceCollective):
    """Forward: keep this rank's slice of a tensor every rank holds whole; backward: all-gather the gradient."""

    def construct(self, x):
        return self.own_slice(x)

    def bprop(self, x, out, dout):
        return (self.gather(dout),)


class GatherFromSequenceParallel(_SequenceCollective):
    """Forward: all-gather the slices; backward: reduce-scatter the (partial) gradient of the whole sequence."""

    def construct(self, x):
        return self.gather(x)

    def bprop(self, x, out, dout):
        return (self.reduce_scatter(dout),)


class ReduceScatterToSequenceParallel(_SequenceCollective):
    """Forward: sum the partial outputs and keep this rank's slice; backward: all-gather the gradient."""

    def construct(self, x):
        return self.reduce_scatter(x)

    def bprop(self, x, out, dout):
        return (self.gather(dout),)
