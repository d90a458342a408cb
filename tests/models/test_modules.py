"""The shared layers against plain numpy references, in PyNative mode on CPU.

Graph mode is covered once for the whole stack in test_llama_model.py (graph loss == PyNative loss), which
keeps the number of graph compilations, the slow part on CPU, to one.
"""
import numpy as np
import mindspore as ms
import pytest
from mindspore import Tensor, ops

from mindformers.core.loss import CrossEntropyLoss
from mindformers.models.modules import (Attention, Embedding, Linear, RMSNorm, RotaryEmbedding, SwiGLUFeedForward,
                                        causal_mask)
from mindformers.models.modules.attention import MASK_VALUE

RNG = np.random.default_rng(0)


def randn(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def set_weight(param, value):
    param.set_data(Tensor(np.asarray(value, np.float32)))


# ---------------------------------------------------------------- numpy references

def ref_rms_norm(x, weight, eps):
    x64 = x.astype(np.float64)
    return x64 / np.sqrt((x64 ** 2).mean(-1, keepdims=True) + eps) * weight


def ref_rotary(x, theta, positions=None):
    """Rotate each pair (x_j, x_{j+d/2}) of a (b, h, s, d) tensor by angle pos * theta^(-2j/d)."""
    half = x.shape[-1] // 2
    positions = np.arange(x.shape[2]) if positions is None else positions
    angles = positions[:, None] * theta ** (-np.arange(half) * 2.0 / x.shape[-1])[None, :]
    cos, sin = np.cos(angles), np.sin(angles)
    first, second = x[..., :half].astype(np.float64), x[..., half:].astype(np.float64)
    return np.concatenate([first * cos - second * sin, second * cos + first * sin], -1)


def ref_attention(x, wq, wk, wv, wo, heads, kv_heads, theta, window=None, padding=None):
    """Textbook causal attention with -inf masking; GQA by repeating each key/value head for its query group."""
    batch, seq, hidden = x.shape
    dim = hidden // heads

    def split(y, n):
        return y.reshape(batch, seq, n, dim).transpose(0, 2, 1, 3)

    q = ref_rotary(split(x @ wq.T, heads), theta)
    k = ref_rotary(split(x @ wk.T, kv_heads), theta)
    v = split(x @ wv.T, kv_heads).astype(np.float64)
    k, v = np.repeat(k, heads // kv_heads, axis=1), np.repeat(v, heads // kv_heads, axis=1)
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dim)
    i, j = np.arange(seq)[:, None], np.arange(seq)[None, :]
    blocked = np.broadcast_to(j > i, (batch, 1, seq, seq))
    if window:
        blocked = blocked | (j <= i - window)
    if padding is not None:
        blocked = blocked | (padding[:, None, None, :] == 0)
    scores = np.where(blocked, -np.inf, scores)
    with np.errstate(invalid="ignore"):  # rows with every key blocked (padded queries) become NaN, unchecked
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, hidden)
    return context @ wo.T


def silu(x):
    return x / (1.0 + np.exp(-x))


# ---------------------------------------------------------------- layers

def test_rms_norm_matches_numpy():
    x, weight = randn(2, 5, 16, scale=3.0), randn(16)
    norm = RMSNorm(16, eps=1e-6)
    set_weight(norm.weight, weight)
    np.testing.assert_allclose(norm(Tensor(x)).asnumpy(), ref_rms_norm(x, weight, 1e-6), rtol=1e-5, atol=1e-5)
    assert norm.param_layout == {"weight": None}


def test_rms_norm_keeps_input_dtype_and_computes_in_float32():
    x = randn(2, 3, 8)
    out = RMSNorm(8, compute_type=ms.float32)(Tensor(x, ms.float16))
    assert out.dtype == ms.float16
    np.testing.assert_allclose(out.asnumpy().astype(np.float32), ref_rms_norm(x, 1.0, 1e-5), rtol=2e-3, atol=2e-3)


def test_rotary_matches_pairwise_rotation():
    theta = 500000.0
    query, key = randn(2, 3, 7, 8), randn(2, 1, 7, 8)
    rotary = RotaryEmbedding(8, max_positions=16, theta=theta)
    rotated_q, rotated_k = rotary(Tensor(query), Tensor(key), 7)
    np.testing.assert_allclose(rotated_q.asnumpy(), ref_rotary(query, theta), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rotated_k.asnumpy(), ref_rotary(key, theta), rtol=1e-5, atol=1e-5)


def test_rotary_scores_depend_only_on_relative_position():
    vector_q, vector_k = randn(8), randn(8)
    rotary = RotaryEmbedding(8, max_positions=16, theta=10000.0)
    tiled_q = Tensor(np.tile(vector_q, (1, 1, 16, 1)))
    tiled_k = Tensor(np.tile(vector_k, (1, 1, 16, 1)))
    q, k = (t.asnumpy()[0, 0] for t in rotary(tiled_q, tiled_k, 16))
    scores = q @ k.T  # scores[i, j] must be a function of i - j only
    np.testing.assert_allclose(scores[5, 2], scores[12, 9], rtol=1e-4)
    np.testing.assert_allclose(scores[3, 3], vector_q @ vector_k, rtol=1e-4)


def test_rotary_scaling_factor_stretches_positions():
    x = randn(1, 1, 6, 8)
    rotary = RotaryEmbedding(8, max_positions=6, theta=10000.0, scaling_factor=2.0)
    out, _ = rotary(Tensor(x), Tensor(x), 6)
    np.testing.assert_allclose(out.asnumpy(), ref_rotary(x, 10000.0, np.arange(6) / 2.0), rtol=1e-5, atol=1e-5)


def test_causal_mask_with_and_without_sliding_window():
    np.testing.assert_array_equal(causal_mask(3), [[0, 1, 1], [0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(causal_mask(4, sliding_window=2),
                                  [[0, 1, 1, 1], [0, 0, 1, 1], [1, 0, 0, 1], [1, 1, 0, 0]])


def attention_case(heads, kv_heads, theta=10000.0, window=None, seq=6, hidden=16):
    attention = Attention(hidden, heads, kv_heads, seq_length=seq, theta=theta, sliding_window=window)
    weights = {}
    for name in ("wq", "wk", "wv", "wo"):
        weights[name] = getattr(attention, name).weight.asnumpy()
    return attention, weights


@pytest.mark.parametrize("heads,kv_heads,window", [(4, 4, None), (4, 2, None), (4, 1, 3)],
                         ids=["mha", "gqa", "mqa-sliding-window"])
def test_attention_matches_numpy(heads, kv_heads, window):
    attention, w = attention_case(heads, kv_heads, theta=500000.0 if kv_heads < heads else 10000.0, window=window)
    x = randn(2, 6, 16)
    expected = ref_attention(x, w["wq"], w["wk"], w["wv"], w["wo"], heads, kv_heads,
                             500000.0 if kv_heads < heads else 10000.0, window)
    np.testing.assert_allclose(attention(Tensor(x)).asnumpy(), expected, rtol=1e-4, atol=1e-5)


def test_attention_is_causal():
    attention, _ = attention_case(4, 2)
    x = randn(1, 6, 16)
    changed = x.copy()
    changed[:, 4:] = randn(1, 2, 16)
    out, out_changed = attention(Tensor(x)).asnumpy(), attention(Tensor(changed)).asnumpy()
    np.testing.assert_allclose(out[:, :4], out_changed[:, :4], rtol=1e-5, atol=1e-6)
    assert not np.allclose(out[:, 4:], out_changed[:, 4:])


def test_attention_padding_mask_blocks_padded_keys():
    attention, w = attention_case(4, 2)
    x = randn(2, 6, 16)
    padding = np.array([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]], np.int32)  # second row left-padded by 2
    out = attention(Tensor(x), Tensor(padding)).asnumpy()
    expected = ref_attention(x, w["wq"], w["wk"], w["wv"], w["wo"], 4, 2, 10000.0, padding=padding)
    np.testing.assert_allclose(out[0], expected[0], rtol=1e-4, atol=1e-5)
    # Padded query rows see no key at all and are undefined; every real position must match.
    np.testing.assert_allclose(out[1, 2:], expected[1, 2:], rtol=1e-4, atol=1e-5)
    # Whatever a padded position holds does not leak into the real ones.
    altered = x.copy()
    altered[1, :2] = randn(2, 16)
    np.testing.assert_allclose(attention(Tensor(altered), Tensor(padding)).asnumpy()[1, 2:], out[1, 2:],
                               rtol=1e-5, atol=1e-6)


def test_attention_mask_value_zeroes_blocked_weights_in_float32():
    assert np.exp(np.float32(MASK_VALUE)) == 0.0


def test_attention_layouts_split_heads_over_model_parallel():
    attention, _ = attention_case(4, 2)
    assert attention.wq.param_layout["weight"] == 0
    assert attention.wk.param_layout["weight"] == 0
    assert attention.wv.param_layout["weight"] == 0
    assert attention.wo.param_layout["weight"] == 1


def test_swiglu_matches_numpy():
    mlp = SwiGLUFeedForward(16, 24)
    x = randn(2, 3, 16)
    w1, w2, w3 = (getattr(mlp, name).weight.asnumpy() for name in ("w1", "w2", "w3"))
    expected = (silu(x @ w1.T) * (x @ w3.T)) @ w2.T
    np.testing.assert_allclose(mlp(Tensor(x)).asnumpy(), expected, rtol=1e-4, atol=1e-5)
    assert [mlp.w1.param_layout["weight"], mlp.w3.param_layout["weight"], mlp.w2.param_layout["weight"]] == [0, 0, 1]


def test_linear_with_bias_and_layout():
    linear = Linear(8, 4, has_bias=True, parallel="column")
    set_weight(linear.bias, randn(4))
    x = randn(3, 2, 8)
    expected = x @ linear.weight.asnumpy().T + linear.bias.asnumpy()
    np.testing.assert_allclose(linear(Tensor(x)).asnumpy(), expected, rtol=1e-5, atol=1e-6)
    assert linear.param_layout == {"weight": 0, "bias": 0}
    assert Linear(8, 4, parallel="row").param_layout["weight"] == 1


def test_embedding_gathers_rows():
    embedding = Embedding(10, 4)
    ids = np.array([[0, 3, 9], [3, 3, 1]], np.int32)
    np.testing.assert_array_equal(embedding(Tensor(ids)).asnumpy(), embedding.embedding_weight.asnumpy()[ids])
    assert embedding.param_layout == {"embedding_weight": 0}
    assert Embedding(10, 4, vocab_parallel=False).param_layout == {"embedding_weight": None}


def test_cross_entropy_value_and_gradient_match_numpy():
    logits = randn(2, 5, 11, scale=2.0)
    labels = RNG.integers(0, 11, (2, 5)).astype(np.int32)
    labels[0, 1] = -100
    mask = (labels != -100)
    mask[1, 4] = False  # e.g. a pad position with an ordinary label
    flat, flat_labels, flat_mask = logits.reshape(-1, 11), labels.reshape(-1), mask.reshape(-1)
    log_probs = flat - np.log(np.exp(flat.astype(np.float64)).sum(-1, keepdims=True))
    picked = log_probs[np.arange(10), np.where(flat_mask, flat_labels, 0)]
    expected_loss = -(picked * flat_mask).sum() / flat_mask.sum()
    probs = np.exp(log_probs)
    probs[np.arange(10), np.where(flat_mask, flat_labels, 0)] -= 1.0
    expected_grad = (probs * flat_mask[:, None] / flat_mask.sum()).reshape(logits.shape)

    loss = CrossEntropyLoss()
    inputs = (Tensor(logits), Tensor(labels), Tensor(mask))
    np.testing.assert_allclose(float(loss(*inputs).asnumpy()), expected_loss, rtol=1e-5)
    grad = ops.GradOperation()(loss)(*inputs).asnumpy()
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-7)
    assert np.all(grad[0, 1] == 0) and np.all(grad[1, 4] == 0)
