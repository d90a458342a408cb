"""sum(x^2) over many float32 tensors in one pass (cpu_square_sum.cc as a MindSpore "aot" Custom op): the global
gradient norm's reduction on CPU (wrapper/grad_norm.py), where MindSpore's ops take three passes per gradient."""
import mindspore as ms
from mindspore import nn, ops

from mindformers.kernels import build
from mindformers.kernels.cpu_attention import kernel_threads

SOURCE = "cpu_square_sum.cc"


def available(dtypes):
    """Whether the kernel can sum tensors of `dtypes` here: not turned off (MINDFORMERS_CPU_KERNELS=0), on CPU, all
    float32, and its library built (compiling it on first use)."""
    return (build.kernels_enabled() and ms.get_context("device_target") == "CPU"
            and all(dtype == ms.float32 for dtype in dtypes) and build.library(SOURCE) is not None)


def one_value(*shapes):  # pylint: disable=unused-argument
    return [1]


def float32(*dtypes):  # pylint: disable=unused-argument
    return ms.float32


class CpuSquareSum(nn.Cell):
    """construct(tensors) -> sum of the squares of all their elements, a float32 scalar."""

    def __init__(self, library=None):
        super().__init__()
        self.config = ms.Tensor([float(kernel_threads())], ms.float32)
        self.square_sum = ops.Custom(f"{library or build.library(SOURCE)}:SquareSum", out_shape=one_value,
                                     out_dtype=float32, func_type="aot")

    def construct(self, tensors):
        return ops.reshape(self.square_sum(*tensors, self.config), ())
