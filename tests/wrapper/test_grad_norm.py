"""The global gradient norm's one-pass CPU kernel (kernels/cpu_square_sum.py) sums the squares that numpy does, over
tensors of many shapes (blocks of 4096 elements that straddle tensors, a 0-d one, an empty one), in PyNative and
graph mode; GlobalGradNorm takes it for float32 gradients and gives the composed ops' norm, also split over groups
(an empty gradient counting 0 on both paths)."""
import numpy as np
import mindspore as ms
import pytest
from mindspore import Tensor

from mindformers.kernels import cpu_square_sum
from mindformers.wrapper.grad_norm import GlobalGradNorm

RNG = np.random.default_rng(0)
SHAPES = [(3,), (5, 7), (4096 * 2 + 5,), (2, 3, 4), (), (0, 4), (300, 70)]


CPU_KERNEL = cpu_square_sum  # tests/fixtures/cpu_kernels.py skips these tests where it does not build


def gradients():
    return [RNG.standard_normal(shape).astype(np.float32) for shape in SHAPES]


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE, ms.GRAPH_MODE])
def test_square_sum_matches_numpy(mode):
    arrays = gradients()
    ms.set_context(mode=mode)
    try:
        total = cpu_square_sum.CpuSquareSum()(tuple(Tensor(a) for a in arrays)).asnumpy()
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    assert total.shape == ()
    assert float(total) == pytest.approx(sum(float((a.astype(np.float64) ** 2).sum()) for a in arrays), rel=1e-6)


def test_global_norm_takes_the_kernel_for_float32_and_matches_the_composed_ops():
    arrays = tuple(Tensor(a) for a in gradients())
    splits = [0, None, None, 1, None, None, 0]  # split weights' squares and whole ones' are summed apart
    fused = GlobalGradNorm(splits, dtypes=[ms.float32] * len(arrays))
    assert fused.fused_square_sum is not None
    assert GlobalGradNorm(splits, dtypes=[ms.float16] + [ms.float32] * 6).fused_square_sum is None
    composed = GlobalGradNorm(splits)
    assert composed.fused_square_sum is None
    expected = np.sqrt(sum(float((a.asnumpy().astype(np.float64) ** 2).sum()) for a in arrays))
    assert float(fused(arrays).asnumpy()) == pytest.approx(expected, rel=1e-6)
    assert float(composed(arrays).asnumpy()) == pytest.approx(expected, rel=1e-4)  # float32 partial sums
