"""The dense layer's oneDNN product on CPU (mindformers/kernels/cpu_linear.py) computes x W^T and both gradients as
numpy does, for shapes that split into panels along either side and for ones too small to split, with MindSpore's
thread count or one thread, in PyNative and graph mode; Linear uses it where it can and gives the same outputs and
gradients as through MindSpore's MatMul (the path with kernels turned off)."""
import os

import numpy as np
import mindspore as ms
import pytest
from mindspore import Tensor, nn, ops

from mindformers.kernels import cpu_linear
from mindformers.models.modules import Linear

RNG = np.random.default_rng(0)


CPU_KERNEL = cpu_linear  # tests/fixtures/cpu_kernels.py skips these tests where it does not build


def products_and_gradients(product, x, weight, d_y):
    y = product(Tensor(x), Tensor(weight)).asnumpy()
    d_x, d_weight = ops.GradOperation(get_all=True, sens_param=True)(product)(Tensor(x), Tensor(weight), Tensor(d_y))
    return y, d_x.asnumpy(), d_weight.asnumpy()


# (rows, out, in): split along the rows, along the outputs, one row (a decode step), fewer than a panel's 16
@pytest.mark.parametrize("rows,out,inputs", [(70, 24, 40), (20, 130, 9), (1, 50, 33), (5, 7, 3)])
@pytest.mark.parametrize("threads", [None, 1])
def test_product_and_gradients_match_numpy(rows, out, inputs, threads):
    default_threads = ms.get_context("runtime_num_threads")
    x, weight = RNG.standard_normal((rows, inputs)), RNG.standard_normal((out, inputs))
    d_y = RNG.standard_normal((rows, out))
    try:
        if threads:
            ms.set_context(runtime_num_threads=threads)
        product = cpu_linear.CpuLinearProduct()
        assert float(product.config.asnumpy()[0]) == ms.get_context("runtime_num_threads")
        y, d_x, d_weight = products_and_gradients(product, *(a.astype(np.float32) for a in (x, weight, d_y)))
    finally:
        ms.set_context(runtime_num_threads=default_threads)
    np.testing.assert_allclose(y, x @ weight.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d_x, d_y @ weight, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d_weight, d_y.T @ x, rtol=1e-5, atol=1e-5)


class SquaredLinear(nn.Cell):
    def __init__(self, linear):
        super().__init__()
        self.linear = linear

    def construct(self, x):
        return (self.linear(x) ** 2).sum()


def linear_results(x, weight, bias, kernels, monkeypatch):
    """Loss and gradients (input, weight, bias) of a Linear with these weights over x."""
    monkeypatch.setenv("MINDFORMERS_CPU_KERNELS", "1" if kernels else "0")
    linear = Linear(weight.shape[1], weight.shape[0], has_bias=True)
    assert (linear.cpu_product is not None) == kernels
    linear.weight.set_data(Tensor(weight))
    linear.bias.set_data(Tensor(bias))
    net = SquaredLinear(linear)
    loss = net(Tensor(x)).asnumpy()
    grads = ms.grad(net, grad_position=0, weights=net.trainable_params())(Tensor(x))
    return [loss, grads[0].asnumpy()] + [g.asnumpy() for g in grads[1]]


def test_linear_through_the_kernel_matches_matmul_in_graph_mode(monkeypatch):
    x, weight, bias = (RNG.standard_normal(shape).astype(np.float32) for shape in [(2, 5, 12), (6, 12), (6,)])
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        with_kernel = linear_results(x, weight, bias, True, monkeypatch)
        without = linear_results(x, weight, bias, False, monkeypatch)
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    for mine, theirs in zip(with_kernel, without):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("preset", [{}, {"OMP_WAIT_POLICY": "active"}, {"GOMP_SPINCOUNT": "infinity"}])
def test_openmp_waits_are_shortened_unless_the_user_chose(monkeypatch, preset):
    """The package shortens libgomp's busy-wait (kernels/openmp_waits.py) only where no policy was set."""
    from mindformers.kernels import openmp_waits  # pylint: disable=import-outside-toplevel
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in preset.items():
        monkeypatch.setenv(name, value)
    openmp_waits.quiet_openmp_waits()
    expected = preset.get("GOMP_SPINCOUNT", None if preset else openmp_waits.SPIN_COUNT)
    assert os.environ.get("GOMP_SPINCOUNT") == expected
