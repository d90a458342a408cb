"""Rotary embedding of float32 queries and keys on CPU in the half-split layout (cpu_rotary.cc as a MindSpore "aot"
Custom op, its backward the same op by the opposite angle), in graph and PyNative mode: what
models/modules/rotary.py's RotaryEmbedding runs for a training step's or a prompt's tables on CPU."""
import functools

import mindspore as ms
from mindspore import nn, ops

from mindformers.kernels import build

SOURCE = "cpu_rotary.cc"


def available(*dtypes):
    """Whether the kernel can rotate in `dtypes` here (build.serves)."""
    return build.serves(SOURCE, dtypes)


def like_x(x, cos, signed_sin, config):  # pylint: disable=unused-argument
    """out_shape and out_dtype: the rotation has x's."""
    return x


@functools.lru_cache(maxsize=None)
def custom_op(library):
    """The rotation with its bprop (the rotation back): one per library, shared by every layer."""
    rotate_back = ops.Custom(f"{library}:RotaryForward", out_shape=like_x, out_dtype=like_x, func_type="aot")

    def bprop(x, cos, signed_sin, config, out, dout):  # pylint: disable=unused-argument
        return (rotate_back(dout, cos, -signed_sin, config), ops.zeros_like(cos), ops.zeros_like(signed_sin),
                ops.zeros_like(config))

    return ops.Custom(f"{library}:RotaryForward", out_shape=like_x, out_dtype=like_x, func_type="aot",
                      bprop=bprop)


class CpuRotary(nn.Cell):
    """construct(x (..., s, d) or (..., s, heads, d), cos, signed_sin (s, d) or (s, 1, d)), all float32 ->
    x * cos + rotate_half-partners(x) * signed_sin."""

    def __init__(self, library=None):
        super().__init__()
        self.config = ms.Tensor([float(build.kernel_threads())], ms.float32)
        self.rotate = custom_op(library or build.library(SOURCE))

    def construct(self, x, cos, signed_sin):
        return self.rotate(x, cos, signed_sin, self.config)
