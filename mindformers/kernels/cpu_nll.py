"""The weighted negative log-likelihood of float32 logits on CPU (cpu_nll.cc as MindSpore "aot" Custom ops, forward
and backward), in graph and PyNative mode: what core/loss/cross_entropy.py's loss runs on CPU, where composed of
MindSpore's ops it takes six passes over a tensor the size of the logits."""
import functools

import mindspore as ms
from mindspore import nn, ops

from mindformers.kernels import build

SOURCE = "cpu_nll.cc"


def available(*dtypes):
    """Whether the kernel can take logits of `dtypes` here (build.serves)."""
    return build.serves(SOURCE, dtypes)


def forward_shapes(logits, labels, weights, config):  # pylint: disable=unused-argument
    return [1], labels


def backward_shape(logits, labels, weights, lse, dout, config):  # pylint: disable=unused-argument
    return logits




@functools.lru_cache(maxsize=None)
def custom_op(library):
    """The forward op (loss (1,), each row's log-sum-exp) with its bprop: one per library."""
    backward = ops.Custom(f"{library}:NllBackward", out_shape=backward_shape, out_dtype=build.float32,
                          func_type="aot")

    def bprop(logits, labels, weights, config, out, dout):
        d_logits = backward(logits, labels, weights, out[1], ops.cast(dout[0], ms.float32), config)
        return d_logits, ops.zeros_like(labels), ops.zeros_like(weights), ops.zeros_like(config)

    return ops.Custom(f"{library}:NllForward", out_shape=forward_shapes, out_dtype=build.two_float32, func_type="aot",
                      bprop=bprop)


class CpuWeightedNll(nn.Cell):
    """construct(logits (n, vocab) float32, labels (n,) int32 in [0, vocab), weights (n,) float32) ->
    sum_i weights_i * -log_softmax(logits_i)[labels_i], a float32 scalar."""

    def __init__(self, library=None):
        super().__init__()
        self.config = ms.Tensor([float(build.kernel_threads())], ms.float32)
        self.nll = custom_op(library or build.library(SOURCE))

    def construct(self, logits, labels, weights):
        return ops.reshape(self.nll(logits, labels, weights, self.config)[0], ())
