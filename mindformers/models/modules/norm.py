"""RMSNorm (our kernel on CPU in float32, MindSpore's fused kernel on Ascend, else composed from primitives) and
LayerNorm."""
import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from mindformers.kernels import cpu_rms_norm
from mindformers.parallel.tensor_parallel import CopyToModelParallel


class Norm(nn.Cell):
    """A norm over the last dimension whose parameters are whole on every model-parallel rank. Under sequence
    parallelism (`on_sequence_shards`) each rank normalises only its slice of the sequence, so the gradients of
    those parameters are partial sums and are summed over the model-parallel group."""

    def __init__(self):
        super().__init__()
        self.sequence_sharded = False

    def on_sequence_shards(self, groups):
        self.sequence_sharded = True
        self.sum_grads = CopyToModelParallel(groups)

    def shared(self, param):
        if self.sequence_sharded:
            return self.sum_grads(param)
        return param


class RMSNorm(Norm):
    """x / sqrt(mean(x^2) + eps) * scale, with the statistics and the product computed in `compute_type`.

    The scale is the weight, or with `unit_offset` (Gemma) 1 + weight, the weight then starting at zero as in
    Gemma's checkpoints. The fused RmsNorm kernel is registered only on Ascend (MindSpore 2.10 has no CPU kernel for
    it in pynative mode), so `use_fused` is set by the model from the device target. On CPU a float32 norm runs our
    kernel (kernels/cpu_rms_norm.py) where it is built.
    """

    def __init__(self, dim, eps=1e-5, compute_type=ms.float32, param_init_type=ms.float32, use_fused=False,
                 unit_offset=False):
        super().__init__()
        initial = np.zeros(dim, np.float32) if unit_offset else np.ones(dim, np.float32)
        self.weight = Parameter(Tensor(initial, dtype=param_init_type), name="weight")
        self.param_layout = {"weight": None}
        self.eps = eps
        self.compute_type = compute_type
        self.use_fused = use_fused
        self.offset = 1.0 if unit_offset else 0.0
        serves = not use_fused and compute_type == ms.float32 and cpu_rms_norm.available(ms.float32)
        self.cpu_kernel = cpu_rms_norm.CpuRmsNorm(eps) if serves else None

    def scale(self):
        weight = ops.cast(self.shared(self.weight), self.compute_type)
        return weight + self.offset if self.offset else weight

    def construct(self, x):
        original_type = x.dtype
        if self.use_fused:
            out = ops.rms_norm(ops.cast(x, self.compute_type), self.scale(), self.eps)[0]
            return ops.cast(out, original_type)
        x = ops.cast(x, self.compute_type)
        if self.cpu_kernel is not None:
            return ops.cast(self.cpu_kernel(x, self.scale()), original_type)
        variance = ops.mean(ops.square(x), -1, keep_dims=True)
        x = x * ops.rsqrt(variance + self.eps)
        return ops.cast(x * self.scale(), original_type)


class LayerNorm(Norm):
    """(x - mean) / sqrt(var + eps) * weight + bias over the last dimension, statistics in `compute_type` (Bloom,
    GPT). Composed from primitives: the same code on every backend, and cheap next to the matmuls around it."""

    def __init__(self, dim, eps=1e-5, compute_type=ms.float32, param_init_type=ms.float32):
        super().__init__()
        self.weight = Parameter(Tensor(np.ones(dim, np.float32), dtype=param_init_type), name="weight")
        self.bias = Parameter(Tensor(np.zeros(dim, np.float32), dtype=param_init_type), name="bias")
        self.param_layout = {"weight": None, "bias": None}
        self.eps = eps
        self.compute_type = compute_type

    def construct(self, x):
        original_type = x.dtype
        x = ops.cast(x, self.compute_type)
        centered = x - ops.mean(x, -1, keep_dims=True)
        variance = ops.mean(ops.square(centered), -1, keep_dims=True)
        x = centered * ops.rsqrt(variance + self.eps)
        return ops.cast(x * ops.cast(self.shared(self.weight), self.compute_type)
                        + ops.cast(self.shared(self.bias), self.compute_type),
                        original_type)
