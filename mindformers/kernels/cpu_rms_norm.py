"""RMSNorm over float32 rows on CPU (cpu_rms_norm.cc as MindSpore "aot" Custom ops, forward and backward), in graph
and PyNative mode: what models/modules/norm.py's RMSNorm runs on CPU, where composed of MindSpore's ops its forward
and backward take ~16 passes over the activations."""
import functools

import mindspore as ms
from mindspore import nn, ops

from mindformers.kernels import build

SOURCE = "cpu_rms_norm.cc"


def available(*dtypes):
    """Whether the kernel can normalise in `dtypes` here (build.serves)."""
    return build.serves(SOURCE, dtypes)


def forward_shapes(x, scale, config):  # pylint: disable=unused-argument
    return x, x[:-1]


def backward_shapes(d_y, x, scale, rstd, config):  # pylint: disable=unused-argument
    return x, scale



@functools.lru_cache(maxsize=None)
def custom_op(library):
    """The forward op (y, 1/rms per row) with its bprop: one per library, shared by every norm."""
    backward = ops.Custom(f"{library}:RmsNormBackward", out_shape=backward_shapes, out_dtype=build.two_float32,
                          func_type="aot")

    def bprop(x, scale, config, out, dout):
        d_x, d_scale = backward(dout[0], x, scale, out[1], config)
        return d_x, d_scale, ops.zeros_like(config)

    return ops.Custom(f"{library}:RmsNormForward", out_shape=forward_shapes, out_dtype=build.two_float32,
                      func_type="aot", bprop=bprop)


class CpuRmsNorm(nn.Cell):
    """construct(x (..., dim), scale (dim,)), both float32 -> x / sqrt(mean(x^2) + eps) * scale."""

    def __init__(self, eps, library=None):
        super().__init__()
        self.config = ms.Tensor([float(build.kernel_threads()), float(eps)], ms.float32)
        self.norm = custom_op(library or build.library(SOURCE))

    def construct(self, x, scale):
        return self.norm(x, scale, self.config)[0]
