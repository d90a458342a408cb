"""RMSNorm's CPU kernel (mindformers/kernels/cpu_rms_norm.py) gives the norm and the gradients of x and of the scale
as numpy does, with MindSpore's thread count or one thread, in PyNative and graph mode; RMSNorm uses it for float32
and gives the same outputs and gradients as composed of MindSpore's ops (kernels turned off), Gemma's 1 + weight
scale included."""
import numpy as np
import mindspore as ms
import pytest
from mindspore import Tensor, nn, ops

from mindformers.kernels import cpu_rms_norm
from mindformers.models.modules import RMSNorm

RNG = np.random.default_rng(0)


CPU_KERNEL = cpu_rms_norm  # tests/fixtures/cpu_kernels.py skips these tests where it does not build


def numpy_norm(x, scale, eps, d_y):
    """y, dx and dscale of y = x / sqrt(mean(x^2) + eps) * scale, in float64."""
    r = 1 / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps)
    g = d_y * scale
    d_x = r * g - x * r ** 3 * (g * x).mean(-1, keepdims=True)
    return x * r * scale, d_x, (d_y * x * r).reshape(-1, x.shape[-1]).sum(0)


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE, ms.GRAPH_MODE])
@pytest.mark.parametrize("shape,threads", [((2, 37, 24), None), ((3, 50), 1), ((1, 7), None)])
def test_norm_and_gradients_match_numpy(mode, shape, threads):
    default_threads = ms.get_context("runtime_num_threads")
    ms.set_context(mode=mode)
    x, scale, d_y = RNG.standard_normal(shape), RNG.standard_normal(shape[-1]), RNG.standard_normal(shape)
    try:
        if threads:
            ms.set_context(runtime_num_threads=threads)
        norm = cpu_rms_norm.CpuRmsNorm(1e-5)
        assert float(norm.config.asnumpy()[0]) == ms.get_context("runtime_num_threads")
        args = (Tensor(x.astype(np.float32)), Tensor(scale.astype(np.float32)))
        y = norm(*args).asnumpy()
        d_x, d_scale = ops.GradOperation(get_all=True, sens_param=True)(norm)(*args, Tensor(d_y.astype(np.float32)))
    finally:
        ms.set_context(runtime_num_threads=default_threads, mode=ms.PYNATIVE_MODE)
    expected = numpy_norm(x, scale, 1e-5, d_y)
    for got, want in zip((y, d_x.asnumpy(), d_scale.asnumpy()), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


class SquaredNorm(nn.Cell):
    def __init__(self, norm):
        super().__init__()
        self.norm = norm

    def construct(self, x):
        return (self.norm(x) * ops.arange(x.shape[-1], dtype=ms.float32)).sum()


@pytest.mark.parametrize("unit_offset", [False, True])
def test_rms_norm_with_and_without_the_kernel_agree(unit_offset, monkeypatch):
    x = Tensor(RNG.standard_normal((4, 5, 16)).astype(np.float32))
    weight = RNG.standard_normal(16).astype(np.float32)
    results = []
    for kernels in ("1", "0"):
        monkeypatch.setenv("MINDFORMERS_CPU_KERNELS", kernels)
        norm = RMSNorm(16, eps=1e-6, unit_offset=unit_offset)
        assert (norm.cpu_kernel is not None) == (kernels == "1")
        norm.weight.set_data(Tensor(weight))
        loss = SquaredNorm(norm)
        d_x, (d_weight,) = ms.value_and_grad(loss, 0, loss.trainable_params())(x)[1]
        results.append((norm(x).asnumpy(), d_x.asnumpy(), d_weight.asnumpy()))
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
