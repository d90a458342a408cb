"""The loss's CPU kernel (mindformers/kernels/cpu_nll.py) gives the weighted negative log-likelihood and its
gradient as the composed WeightedNll does, in PyNative and graph mode, for rows with zero weight and logits far from
zero; CrossEntropyLoss uses it on CPU; a label outside the vocabulary fails the op instead of touching memory
outside the row."""
import numpy as np
import mindspore as ms
import pytest
from mindspore import Tensor

from mindformers.core.loss import CrossEntropyLoss
from mindformers.core.loss.cross_entropy import WeightedNll
from mindformers.kernels import cpu_nll

RNG = np.random.default_rng(0)


CPU_KERNEL = cpu_nll  # tests/fixtures/cpu_kernels.py skips these tests where it does not build


def loss_and_gradient(cell, logits, labels, weights):
    loss, d_logits = ms.value_and_grad(cell, 0)(logits, labels, weights)
    return loss.asnumpy(), d_logits.asnumpy()


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE, ms.GRAPH_MODE])
def test_kernel_equals_the_composed_loss(mode):
    ms.set_context(mode=mode)
    rows, vocab = 13, 1000
    logits = Tensor((RNG.standard_normal((rows, vocab)) * 8 + 50).astype(np.float32))
    labels = Tensor(RNG.integers(0, vocab, rows).astype(np.int32))
    weights = Tensor((RNG.random(rows) * (RNG.random(rows) > 0.3)).astype(np.float32))
    try:
        got = loss_and_gradient(cpu_nll.CpuWeightedNll(), logits, labels, weights)
        want = loss_and_gradient(WeightedNll(), logits, labels, weights)
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-7)


def test_cross_entropy_uses_the_kernel_on_cpu():
    assert isinstance(CrossEntropyLoss().weighted_nll, cpu_nll.CpuWeightedNll)


def test_a_label_outside_the_vocabulary_fails():
    logits = Tensor(np.zeros((2, 5), np.float32))
    with pytest.raises(RuntimeError):
        cpu_nll.CpuWeightedNll()(logits, Tensor(np.array([1, 5], np.int32)), Tensor(np.ones(2, np.float32))).asnumpy()
