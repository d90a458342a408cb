"""sum(x^2) over many float32 tensors in one pass (cpu_square_sum.cc as a MindSpore "aot" Custom op): the global
gradient norm's reduction on CPU (wrapper/grad_norm.py), where MindSpore's ops take three passes per gradient."""
import mindspore as ms
from mindspore import nn, ops

from mindformers.kernels import build

SOURCE = "cpu_square_sum.cc"


def available(dtypes):
    """Whether the kernel can sum tensors of `dtypes` here (build.serves)."""
    return build.serves(SOURCE, dtypes)


class CpuSquareSum(nn.Cell):
    """construct(tensors) -> sum of the squares of all their elements, a float32 scalar."""

    def __init__(self, library=None):
        super().__init__()
        self.config = ms.Tensor([float(build.kernel_threads())], ms.float32)
        self.square_sum = ops.Custom(f"{library or build.library(SOURCE)}:SquareSum", out_shape=build.one_value,
                                     out_dtype=build.float32, func_type="aot")

    def construct(self, tensors):
        return ops.reshape(self.square_sum(*tensors, self.config), ())
