"""AdamW's moments start as zeros in their dtype (float32 ones written at the build, others from the initializer), and
its updates equal MindSpore's nn.AdamWeightDecay's, run as its jit graph and op by op (layerwise training's way)."""
import numpy as np
import mindspore as ms
import pytest
from mindspore import Parameter, Tensor, nn

from mindformers.core.optim import AdamW, FP32StateAdamWeightDecay
from mindformers.models.decoder.layerwise import run_op_by_op

RNG = np.random.default_rng(0)


def parameters(dtype=ms.float32):
    return [Parameter(Tensor(RNG.standard_normal((4, 6)).astype(np.float32), dtype), name="layer.w"),
            Parameter(Tensor(RNG.standard_normal((6,)).astype(np.float32), dtype), name="layer.bias")]


def test_moments_start_at_zero_in_their_dtype():
    for optimizer, dtype in ((AdamW(parameters()), ms.float32), (AdamW(parameters(ms.float16)), ms.float16),
                             (FP32StateAdamWeightDecay(parameters(ms.float16)), ms.float32)):
        for moment in tuple(optimizer.moments1) + tuple(optimizer.moments2):
            assert moment.dtype == dtype
            np.testing.assert_array_equal(moment.asnumpy(), np.zeros(moment.shape))
        assert [m.name for m in optimizer.moments1] == ["adam_m.layer.w", "adam_m.layer.bias"]


@pytest.mark.parametrize("op_by_op", [False, True])
def test_updates_equal_mindspore_adam_weight_decay(op_by_op):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ours, theirs = parameters(), parameters()
    for mine, reference in zip(ours, theirs):
        reference.set_data(mine.data.copy())
    optimizer = AdamW(ours, learning_rate=0.1, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    if op_by_op:
        run_op_by_op(optimizer)
    reference = nn.AdamWeightDecay(
        [{"params": [theirs[0]], "weight_decay": 0.1}, {"params": [theirs[1]], "weight_decay": 0.0}],
        learning_rate=0.1, beta1=0.9, beta2=0.95, eps=1e-8)
    for _ in range(2):
        grads = tuple(Tensor(RNG.standard_normal(p.shape).astype(np.float32)) for p in ours)
        optimizer(grads)
        reference(grads)
    for mine, expected in zip(ours, theirs):
        np.testing.assert_allclose(mine.asnumpy(), expected.asnumpy(), rtol=1e-6, atol=1e-7)
    for mine, expected in zip(optimizer.moments2, reference.moments2):
        np.testing.assert_allclose(mine.asnumpy(), expected.asnumpy(), rtol=1e-6, atol=1e-7)
