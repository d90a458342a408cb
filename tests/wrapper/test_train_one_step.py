"""The train step on a tiny model in PyNative mode: accumulation, clipping, loss scale and overflow skip."""
import numpy as np
import mindspore as ms
import pytest
from mindspore import Tensor, nn

from mindformers.core.optim import AdamW
from mindformers.models.llama import LlamaConfig, LlamaForCausalLM
from mindformers.wrapper import MFTrainOneStepCell
from mindformers.wrapper.grad_norm import global_norm


@pytest.fixture(autouse=True)
def pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE)


def tiny_model(seed=0):
    np.random.seed(seed)
    config = LlamaConfig(seq_length=8, hidden_size=32, num_layers=1, num_heads=4, n_kv_heads=2, vocab_size=50,
                         intermediate_size=64, compute_dtype="float32", softmax_compute_type="float32",
                         rotary_dtype="float32", param_init_type="float32")
    model = LlamaForCausalLM(config)
    model.set_train(True)
    return model


def weights(model):
    return {p.name: p.asnumpy().copy() for p in model.trainable_params()}


def batch(rows=4, seed=1):
    return Tensor(np.random.default_rng(seed).integers(0, 50, (rows, 9)).astype(np.int32))


def sgd_step(accumulation):
    model = tiny_model()
    optimizer = nn.SGD(model.trainable_params(), learning_rate=0.1)
    cell = MFTrainOneStepCell(model, optimizer, use_clip_grad=False, gradient_accumulation_steps=accumulation)
    loss, overflow, _, grad_norm = cell(batch())
    return float(loss.asnumpy()), bool(overflow.asnumpy()), float(grad_norm.asnumpy()), weights(model)


def test_accumulation_matches_one_large_batch():
    # Mean of two micro-batch means equals the full-batch mean here because every row has all tokens valid.
    loss1, _, norm1, after1 = sgd_step(1)
    loss2, _, norm2, after2 = sgd_step(2)
    assert loss2 == pytest.approx(loss1, rel=1e-5)
    assert norm2 == pytest.approx(norm1, rel=1e-4)
    for name in after1:
        np.testing.assert_allclose(after2[name], after1[name], rtol=1e-5, atol=1e-6)


def test_clipping_bounds_the_update():
    model = tiny_model()
    before = weights(model)
    optimizer = nn.SGD(model.trainable_params(), learning_rate=1.0)
    cell = MFTrainOneStepCell(model, optimizer, use_clip_grad=True, max_grad_norm=0.01)
    _, _, grad_norm, _ = cell(batch())
    assert float(grad_norm.asnumpy()) > 0.01
    update = [Tensor(before[name] - value.asnumpy()) for name, value in
              ((p.name, p) for p in model.trainable_params())]
    assert float(global_norm(update).asnumpy()) == pytest.approx(0.01, rel=1e-3)


def test_overflow_skips_the_step_and_lowers_the_scale():
    model = tiny_model()
    before = weights(model)
    optimizer = AdamW(model.trainable_params(), learning_rate=1e-2)
    # fp32 overflows once the scaled loss exceeds ~3.4e38: a scale of 1e38 guarantees inf gradients.
    scaler = nn.DynamicLossScaleUpdateCell(loss_scale_value=1e38, scale_factor=2, scale_window=1000)
    cell = MFTrainOneStepCell(model, optimizer, scale_sense=scaler)
    _, overflow, scale, _ = cell(batch())
    assert bool(overflow.asnumpy())
    assert float(scale.asnumpy()) == pytest.approx(5e37, rel=1e-6)
    assert int(optimizer.global_step.asnumpy().reshape(-1)[0]) == 0
    for name, value in weights(model).items():
        np.testing.assert_array_equal(value, before[name])
    _, overflow, _, _ = MFTrainOneStepCell(model, optimizer, scale_sense=1024.0)(batch())
    assert not bool(overflow.asnumpy())
    assert any(not np.array_equal(value, before[name]) for name, value in weights(model).items())


def test_no_weight_decay_on_norms():
    from mindformers.core.optim.adamw import decays
    model = tiny_model()
    names = {p.name: decays(p) for p in model.trainable_params()}
    assert names["model.layers.0.attention_norm.weight"] is False
    assert names["model.norm_out.weight"] is False
    assert names["model.layers.0.attention.wq.weight"] is True
