"""Dense layers whose weights declare how they split over model parallel ranks."""
import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, initializer

from mindformers.kernels import cpu_linear
from mindformers.models.modules.deferred_init import DeferredNormal, host_tensor, normal_values
from mindformers.models.modules.layout import EXPERT_AXIS, MODEL_AXIS
from mindformers.models.modules.shape_only import (building_shapes_only, initial_values_are_deferred,
                                                   initial_values_skipped, parameter_of)
from mindformers.parallel.sequence_parallel import ReduceScatterToSequenceParallel
from mindformers.parallel.tensor_parallel import (CopyToModelParallel, GatherFromModelParallel,
                                                  ReduceFromModelParallel, keep_local_shards, local_size)

# Rows up to which a product through the (in, out) weight copy beats the (out, in) weight on CPU (measured in the
# decode steps of the 8-layer benchmark model: ~1.6x faster at 1 and 8 rows; ~20% slower at 128 rows).
TRANSPOSED_MAX_ROWS = 64

# Megatron naming: a column-parallel layer splits its outputs (weight dim 0), a row-parallel one its inputs (dim 1).
SPLIT_DIM = {"column": 0, "row": 1, None: None}


def normal_init(shape, std, dtype):
    """Initial N(0, std) values, reproducible from numpy's global RNG, which build_context seeds (deferred_init.py)."""
    if building_shapes_only() or (initial_values_skipped() and not initial_values_are_deferred()):
        # dry run, or a checkpoint loaded at once: a lazy initializer, never allocated under no_init_parameters
        return initializer(Normal(std), shape, dtype)
    if initial_values_skipped():  # a model-parallel rank cuts its slice out of these before the checkpoint fills it
        return host_tensor(np.zeros(shape, np.float32), dtype)
    if initial_values_are_deferred():  # a model-parallel rank draws only its slice, when it splits the layer
        return initializer(DeferredNormal(shape, std), shape, dtype)
    # float32 values are wrapped without a copy, so they may still be drawing (draws_in_background)
    return host_tensor(normal_values(std, shape, in_background=dtype == ms.float32), dtype)


def normal_parameter(shape, std, dtype, name):
    """A weight Parameter of N(0, std) initial values (normal_init), holding their memory, not a copy of it."""
    return parameter_of(normal_init(shape, std, dtype), name)


class Linear(nn.Cell):
    """y = x W^T (+ b) with W of shape (out_features, in_features), computed in `compute_dtype`."""

    # Whether y is x matmul_weight()^T alone, so that an LM head may hand its weight to a fused head + loss
    # (core/loss/head_loss.py); LoRA (its class replaces this one in place) adds a path of its own.
    fuses_with_loss = True

    def __init__(self, in_features, out_features, has_bias=False, parallel="column", init_std=0.02,
                 compute_dtype=ms.float32, param_init_type=ms.float32, gather_output=False):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = normal_parameter((out_features, in_features), init_std, param_init_type, "weight")
        self.has_bias = has_bias
        if has_bias:
            self.bias = Parameter(Tensor(np.zeros(out_features, np.float32), dtype=param_init_type), name="bias")
        self.param_layout = {"weight": SPLIT_DIM[parallel], "bias": 0 if parallel == "column" else None}
        self.compute_dtype = compute_dtype
        self.matmul = ops.MatMul(transpose_b=True)
        # oneDNN's sgemm on CPU in float32 (kernels/cpu_linear.py): ~1.8x MindSpore's MatMul per CPU second
        self.cpu_product = (cpu_linear.CpuLinearProduct() if cpu_linear.available(compute_dtype, param_init_type)
                            else None)
        self.transposed_matmul = ops.MatMul()
        # An (in, out) copy of the weight that generation on CPU attaches for the length of a generate() call
        # (mindformers/generation/transposed_weights.py). Not a parameter of the cell: checkpoints, optimizers and
        # graphs compiled outside generation never see it.
        self.weight_t = None
        # Whole on one process until `parallelize` splits it (mindformers/parallel/parallelize.py).
        self.parallel = parallel
        self.gathers_when_split = gather_output
        self.column_split = self.row_split = self.sequence_sharded = self.gather_output = self.copies_input = False
        self.output_size = out_features

    def parallelize(self, groups):
        """In a stand-alone model-parallel run (CPU): keep this rank's slice of the weights and add the collectives
        the split needs. A column-parallel layer takes the whole input (its gradient is summed over the group) and
        yields its share of the outputs, joined to full width when built with `gather_output`; a row-parallel layer
        takes its share of the inputs and sums the partial outputs.

        With sequence parallelism the column-parallel input arrives through a sequence all-gather, whose backward
        already sums the gradient over the group, and a row-parallel layer reduce-scatters its (batch, seq, out)
        outputs to this rank's slice of the sequence; its whole bias is then added on that slice, so the bias's
        gradient is summed over the group."""
        self.column_split = groups.model_sharded and self.parallel == "column"
        self.row_split = groups.model_sharded and self.parallel == "row"
        self.sequence_sharded = self.row_split and groups.sequence_sharded
        self.gather_output = self.column_split and self.gathers_when_split
        self.output_size = local_size(self.out_features, groups) if self.column_split else self.out_features
        self.copies_input = self.column_split and not groups.sequence_sharded
        if self.copies_input:
            self.copy_input = CopyToModelParallel(groups)
        if self.sequence_sharded:
            self.reduce_output = ReduceScatterToSequenceParallel(groups)
            self.sum_bias_grad = CopyToModelParallel(groups)
        elif self.row_split:
            self.reduce_output = ReduceFromModelParallel(groups)
        if self.gather_output:
            self.gather = GatherFromModelParallel(groups)
            self.output_size = self.out_features
        keep_local_shards(self, groups)

    def matmul_weight(self):
        """The (out, in) matrix inputs are multiplied by (the weight itself; NormHead's is normalised)."""
        return self.weight

    def transposable_weight(self):
        """The (out, in) matrix generation keeps an (in, out) copy of (mindformers/generation/transposed_weights.py)."""
        return self.matmul_weight()

    def project(self, x):
        """x (n, in) W^T in compute_dtype: through the attached (in, out) copy of matmul_weight() when there is one
        and x has few rows (a decode step); the copy is the slower layout from about a hundred rows on (a
        prefill)."""
        if self.weight_t is None or x.shape[0] > TRANSPOSED_MAX_ROWS:
            if self.cpu_product is not None:
                return self.cpu_product(x, self.matmul_weight())
            return self.matmul(x, ops.cast(self.matmul_weight(), self.compute_dtype))
        return self.transposed_matmul(x, ops.cast(self.weight_t, self.compute_dtype))

    def construct(self, x):
        shape = x.shape
        x = ops.reshape(ops.cast(x, self.compute_dtype), (-1, shape[-1]))
        if self.copies_input:
            x = self.copy_input(x)
        y = self.project(x)
        if self.sequence_sharded:  # (batch, seq, out) partial sums -> (batch, seq / mp, out) of the whole sums
            y = self.reduce_output(ops.reshape(y, shape[:-1] + (self.output_size,)))
            if self.has_bias:
                y = y + ops.cast(self.sum_bias_grad(self.bias), self.compute_dtype)
            return y
        if self.row_split:
            y = self.reduce_output(y)
        if self.has_bias:  # a row-parallel bias is whole: added once, after the partial outputs are summed
            y = y + ops.cast(self.bias, self.compute_dtype)
        if self.gather_output:
            y = self.gather(y)
        return ops.reshape(y, shape[:-1] + (self.output_size,))


class ExpertLinear(nn.Cell):
    """The same projection for each of `experts` experts: y[e] = x[e] W[e]^T with W of shape (experts, out, in),
    x of shape (experts, rows, in). The experts split over expert_parallel (dim 0); each expert's outputs (column)
    or inputs (row) over model_parallel. No collectives here: the mixture-of-experts layer's token exchange sums
    the partial results (mindformers/parallel/expert_parallel.py)."""

    def __init__(self, in_features, out_features, experts, parallel="column", init_std=0.02,
                 compute_dtype=ms.float32, param_init_type=ms.float32):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = normal_parameter((experts, out_features, in_features), init_std, param_init_type, "weight")
        self.param_layout = {"weight": {EXPERT_AXIS: 0, MODEL_AXIS: 1 if parallel == "column" else 2}}
        self.compute_dtype = compute_dtype
        self.matmul = ops.BatchMatMul(transpose_b=True)  # batch dims equal on both sides (CPU has no broadcast)

    def parallelize(self, groups):
        keep_local_shards(self, groups)

    def construct(self, x):
        return self.matmul(ops.cast(x, self.compute_dtype), ops.cast(self.weight, self.compute_dtype))


class NormHead(Linear):
    """Baichuan2's LM head: each row of the (vocab, hidden) weight is divided by its L2 norm before use, so the
    logits are cosine-like scores scaled by the hidden state's norm. The rows are normalised in every forward (in
    training the gradient flows through the normalisation, as in Baichuan2's reference code); generation's
    transposed copy is made of the normalised weight, so a decode step does not normalise again."""

    def matmul_weight(self):
        weight = ops.cast(self.weight, ms.float32)
        norms = ops.sqrt(ops.sum(ops.square(weight), 1, keepdim=True))
        return ops.cast(weight / ops.maximum(norms, 1e-12), self.weight.dtype)  # torch's F.normalize floor
