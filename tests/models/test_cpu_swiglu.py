"""The gated MLP's CPU kernel (mindformers/kernels/cpu_swiglu.py) gives silu(gate) * up and both gradients as numpy
does, for values far out on both sides of the sigmoid, in PyNative and graph mode; GatedFeedForward uses it for
SiLU in float32 and gives the same outputs and gradients as composed of MindSpore's ops (kernels turned off),
with two projections or the fused one; GeGLU keeps the composed path."""
import numpy as np
import mindspore as ms
import pytest
from mindspore import Tensor, ops

from mindformers.kernels import cpu_swiglu
from mindformers.models.modules import SwiGLUFeedForward

CPU_KERNEL = cpu_swiglu  # tests/fixtures/cpu_kernels.py skips these tests where it does not build
RNG = np.random.default_rng(0)


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE, ms.GRAPH_MODE])
def test_kernel_matches_numpy(mode):
    ms.set_context(mode=mode)
    gate = RNG.standard_normal((3, 4099)) * 4
    gate[0, :6] = [-120, -90, -30, 30, 90, 120]
    up, d_out = RNG.standard_normal((2, 3, 4099))
    try:
        swiglu = cpu_swiglu.CpuSwiGLU()
        args = (Tensor(gate.astype(np.float32)), Tensor(up.astype(np.float32)))
        out = swiglu(*args).asnumpy()
        d_gate, d_up = ops.GradOperation(get_all=True, sens_param=True)(swiglu)(*args, Tensor(d_out.astype(np.float32)))
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    s = 1 / (1 + np.exp(-gate))
    np.testing.assert_allclose(out, gate * s * up, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(d_gate.asnumpy(), d_out * up * s * (1 + gate * (1 - s)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(d_up.asnumpy(), d_out * gate * s, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fused", [False, True])
def test_feed_forward_with_and_without_the_kernel_agree(fused, monkeypatch):
    x = Tensor(RNG.standard_normal((2, 5, 16)).astype(np.float32))
    results = []
    for kernels in ("1", "0"):
        monkeypatch.setenv("MINDFORMERS_CPU_KERNELS", kernels)
        np.random.seed(3)
        mlp = SwiGLUFeedForward(16, 40, fused=fused, init_std=0.5)  # gates well inside and outside 0
        assert (mlp.cpu_swiglu is not None) == (kernels == "1")
        loss, grads = ms.value_and_grad(lambda v, m=mlp: (m(v) ** 2).sum(), 0, mlp.trainable_params())(x)
        results.append([loss.asnumpy(), grads[0].asnumpy()] + [g.asnumpy() for g in grads[1]])
    for got, want in zip(*results):  # float32 sums in another order: relative to each tensor's scale
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_geglu_keeps_the_composed_path():
    assert SwiGLUFeedForward(16, 40, activation="gelu_tanh").cpu_swiglu is None
