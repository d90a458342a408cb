"""SiLU(gate) * up over float32 tensors on CPU (cpu_swiglu.cc as MindSpore "aot" Custom ops, forward and backward),
in graph and PyNative mode: the gated MLP's activation (models/modules/mlp.py) where composed of MindSpore's ops it
takes eight passes over a layer's widest activations."""
import functools

import mindspore as ms
from mindspore import nn, ops

from mindformers.kernels import build

SOURCE = "cpu_swiglu.cc"


def available(*dtypes):
    """Whether the kernel can compute in `dtypes` here (build.serves)."""
    return build.serves(SOURCE, dtypes)


def shape_of_gate(gate, *shapes):  # pylint: disable=unused-argument
    return gate


def two_of_gate_shape(d_out, gate, *shapes):  # pylint: disable=unused-argument
    return gate, gate




@functools.lru_cache(maxsize=None)
def custom_op(library):
    """The forward op with its bprop: one per library, shared by every MLP."""
    backward = ops.Custom(f"{library}:SwigluBackward", out_shape=two_of_gate_shape, out_dtype=build.two_float32,
                          func_type="aot")

    def bprop(gate, up, config, out, dout):  # pylint: disable=unused-argument
        d_gate, d_up = backward(dout, gate, up, config)
        return d_gate, d_up, ops.zeros_like(config)

    return ops.Custom(f"{library}:SwigluForward", out_shape=shape_of_gate, out_dtype=build.float32, func_type="aot",
                      bprop=bprop)


class CpuSwiGLU(nn.Cell):
    """construct(gate, up), float32 tensors of one shape -> silu(gate) * up."""

    def __init__(self, library=None):
        super().__init__()
        self.config = ms.Tensor([float(build.kernel_threads())], ms.float32)
        self.swiglu = custom_op(library or build.library(SOURCE))

    def construct(self, gate, up):
        return self.swiglu(gate, up, self.config)
