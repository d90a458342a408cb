"""A dense layer's product x W^T on CPU through oneDNN's sgemm (cpu_linear.cc as MindSpore "aot" Custom ops), in
graph and PyNative mode. Linear uses it wherever it can run (float32 on CPU, the library built) and MindSpore's
MatMul elsewhere. The gradients are two ops, dx and dW, so that a graph that needs only one (a frozen weight under
LoRA, the first layer's input) drops the other."""
import functools

import mindspore as ms
from mindspore import nn, ops

from mindformers.kernels import build

SOURCE = "cpu_linear.cc"


def available(*dtypes):
    """Whether the kernel can serve a product computed in `dtypes` here (build.serves)."""
    return build.serves(SOURCE, dtypes)


def product_shape(x, weight, config):  # pylint: disable=unused-argument
    return [x[0], weight[0]]


def input_grad_shape(d_y, weight, config):  # pylint: disable=unused-argument
    return [d_y[0], weight[1]]


def weight_grad_shape(d_y, x, config):  # pylint: disable=unused-argument
    return [d_y[1], x[1]]


def first_dtype(*dtypes):
    return dtypes[0]


@functools.lru_cache(maxsize=None)
def custom_ops(library):
    """(x W^T with its bprop, dy W, dy^T x) as Custom ops of `library`: one set per library, shared by every Linear
    (each op made costs ~0.4 ms, hundreds of Linears in a deep model)."""
    input_grad = ops.Custom(f"{library}:LinearInputGrad", out_shape=input_grad_shape, out_dtype=first_dtype,
                            func_type="aot")
    weight_grad = ops.Custom(f"{library}:LinearWeightGrad", out_shape=weight_grad_shape, out_dtype=first_dtype,
                             func_type="aot")

    def bprop(x, weight, config, out, dout):  # pylint: disable=unused-argument
        return input_grad(dout, weight, config), weight_grad(dout, x, config), ops.zeros_like(config)

    product = ops.Custom(f"{library}:LinearForward", out_shape=product_shape, out_dtype=first_dtype,
                         func_type="aot", bprop=bprop)
    return product, input_grad, weight_grad


class CpuLinearProduct(nn.Cell):
    """x (rows, in) W^T for W (out, in), both float32: (rows, out); and, for a cell that computes its gradients
    itself (core/loss/head_loss.py), the gradient products by name."""

    def __init__(self, library=None):
        super().__init__()
        self.config = ms.Tensor([float(build.kernel_threads())], ms.float32)
        self.product, self.input_grad_product, self.weight_grad_product = custom_ops(library or build.library(SOURCE))

    def construct(self, x, weight):
        return self.product(x, weight, self.config)

    def input_grad(self, d_y, weight):
        """d_y (rows, out) W (out, in): (rows, in)."""
        return self.input_grad_product(d_y, weight, self.config)

    def weight_grad(self, d_y, x):
        """d_y^T (out, rows) x (rows, in): (out, in)."""
        return self.weight_grad_product(d_y, x, self.config)
