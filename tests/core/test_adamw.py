"""AdamW's moments start as zeros in their dtype (float32 ones written at the build, others from the initializer), and
its updates equal MindSpore's nn.AdamWeightDecay's: the CPU kernel's in graph and PyNative mode, and MindSpore's
own operators run as a jit graph and op by op (layerwise training's way)."""
import numpy as np
import mindspore as ms
import pytest
from mindspore import Parameter, Tensor, nn, ops

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


def reference_update(params):
    """MindSpore's nn.AdamWeightDecay over `params`, with weight decay 0.1 on the matrices."""
    return nn.AdamWeightDecay([{"params": [p for p in params if len(p.shape) > 1], "weight_decay": 0.1},
                               {"params": [p for p in params if len(p.shape) == 1], "weight_decay": 0.0}],
                              learning_rate=0.1, beta1=0.9, beta2=0.95, eps=1e-8)


def assert_same_state(optimizer, ours, reference, theirs):
    for mine, expected in zip(list(ours) + list(optimizer.moments1) + list(optimizer.moments2),
                              list(theirs) + list(reference.moments1) + list(reference.moments2)):
        np.testing.assert_allclose(mine.asnumpy(), expected.asnumpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kernel", [True, False])
@pytest.mark.parametrize("op_by_op", [False, True])
def test_updates_equal_mindspore_adam_weight_decay(op_by_op, kernel, monkeypatch):
    """The CPU kernel's one update (kernels/cpu_adamw.py) and MindSpore's per-parameter operators (kernels off), op by
    op as layerwise training runs them or as a jit graph, with and without the train step's gradient factor."""
    monkeypatch.setenv("MINDFORMERS_CPU_KERNELS", "1" if kernel else "0")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ours, theirs = parameters(), parameters()
    for mine, reference in zip(ours, theirs):
        reference.set_data(mine.data.copy())
    optimizer = AdamW(ours, learning_rate=0.1, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    assert (optimizer.cpu_update is not None) == kernel
    if op_by_op:
        run_op_by_op(optimizer)
    reference = reference_update(theirs)
    for scale in (None, 0.5):
        grads = tuple(Tensor(RNG.standard_normal(p.shape).astype(np.float32)) for p in ours)
        if scale is None:
            optimizer(grads)
            reference(grads)
        else:
            optimizer(grads, Tensor(scale, ms.float32))
            reference(tuple(g * scale for g in grads))
    assert_same_state(optimizer, ours, reference, theirs)
    assert int(optimizer.global_step.asnumpy()[0]) == 2


def test_kernel_updates_in_place_in_graph_mode():
    """In a compiled step the kernel writes the parameters and moments where they lie, over blocks that end inside a
    parameter and parameters smaller than a block, and a read of a weight after the update sees the new value."""
    ms.set_context(mode=ms.GRAPH_MODE)
    shapes = {"big.w": (130, 70), "mid.w": (9, 1000), "norm.weight": (70,)}

    def made():
        rng = np.random.default_rng(1)
        return [Parameter(Tensor(rng.standard_normal(shape).astype(np.float32)), name=name)
                for name, shape in shapes.items()]

    ours, theirs = made(), made()
    optimizer = AdamW(ours, learning_rate=0.1, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    assert optimizer.cpu_update is not None

    class Step(nn.Cell):
        def __init__(self, update):
            super().__init__()
            self.update = update

        def construct(self, grads, scale):
            before = self.update.parameters[0] * 1
            done = self.update(grads, scale)
            return before, ops.depend(self.update.parameters[0] * 1, done)

    step, reference = Step(optimizer), reference_update(theirs)
    for _ in range(3):
        grads = tuple(Tensor(RNG.standard_normal(p.shape).astype(np.float32)) for p in ours)
        before, after = step(grads, Tensor(0.25, ms.float32))
        np.testing.assert_allclose(before.asnumpy(), theirs[0].asnumpy(), rtol=1e-6, atol=1e-7)
        reference(tuple(g * 0.25 for g in grads))
        np.testing.assert_allclose(after.asnumpy(), theirs[0].asnumpy(), rtol=1e-6, atol=1e-7)
    assert_same_state(optimizer, ours, reference, theirs)


def test_kernel_serves_float32_only():
    assert AdamW(parameters()).cpu_update is not None
    assert AdamW(parameters(ms.float16)).cpu_update is None
    assert FP32StateAdamWeightDecay(parameters(ms.float16)).cpu_update is None
