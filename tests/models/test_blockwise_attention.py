"""Blockwise attention computes what the exact attention does, forward and gradients, for causal, sliding-window,
GQA/MQA, ALiBi and padded inputs, both ways it runs on CPU: the fused C++ kernel (mindformers/kernels/) and the
composed primitives (mindformers/models/modules/blockwise_attention.py, the fallback without a compiler); in
PyNative, and in graph mode inside a whole model's training step."""
import os

import numpy as np
import mindspore as ms
import pytest
from mindspore import Tensor, nn

from mindformers.kernels import build, cpu_attention
from mindformers.models.decoder import choices
from mindformers.models.llama import LlamaConfig, LlamaForCausalLM
from mindformers.models.modules.attention import Attention
from mindformers.models.modules.blockwise_attention import BlockwiseAttention, block_plan
from mindformers.models.modules.positions import AlibiPosition

RNG = np.random.default_rng(0)
SEQ, HIDDEN = 10, 16


@pytest.fixture(params=["fused", "composed"])
def path(request, monkeypatch):
    """Blockwise attention's CPU path: the fused kernel, or (kernels turned off) the composed primitives."""
    if request.param == "composed":
        monkeypatch.setenv("MINDFORMERS_CPU_KERNELS", "0")
    elif not cpu_attention.available(ms.float32):  # optional by design: no C++ compiler or oneDNN on this host
        pytest.skip("the fused CPU kernel does not build here")
    return request.param


def expected_path(attention, path):
    kind = cpu_attention.CpuFusedAttention if path == "fused" else BlockwiseAttention
    assert isinstance(attention.blockwise, kind)
    attention.blockwise.block_size = 4  # composed: blocks of 4 rows over SEQ (the last partial)


def attention_pair(heads, kv_heads, window, alibi, path):
    """The exact and the blockwise attention with the same weights."""
    def make(blockwise):
        position = AlibiPosition(heads) if alibi else None
        return Attention(HIDDEN, heads, kv_heads, SEQ, sliding_window=window, position=position, blockwise=blockwise)
    exact, blockwise = make(False), make(True)
    expected_path(blockwise, path)
    for (_, mine), (_, theirs) in zip(blockwise.parameters_and_names(), exact.parameters_and_names()):
        mine.set_data(theirs.data.copy())
    return exact, blockwise


class WeightedSum(nn.Cell):
    """sum(attention(x) * weights): a loss whose gradient reaches every output position with its own weight."""

    def __init__(self, attention, weights):
        super().__init__()
        self.attention = attention
        self.weights = Tensor(weights)

    def construct(self, x, attention_mask):
        return (self.attention(x, attention_mask) * self.weights).sum()


def outputs_and_gradients(attention, x, padding, weights):
    loss = WeightedSum(attention, weights)
    grad = ms.grad(loss, grad_position=0, weights=attention.trainable_params())
    d_x, d_params = grad(Tensor(x), Tensor(padding))
    return attention(Tensor(x), Tensor(padding)).asnumpy(), [d_x.asnumpy()] + [g.asnumpy() for g in d_params]


@pytest.mark.parametrize("heads,kv_heads,window,alibi", [(4, 4, None, False), (4, 2, 3, False), (4, 1, None, True)],
                         ids=["causal", "gqa-sliding-window", "mqa-alibi"])
def test_blockwise_matches_exact_forward_and_gradients(heads, kv_heads, window, alibi, path):
    exact, blockwise = attention_pair(heads, kv_heads, window, alibi, path)
    x = RNG.standard_normal((2, SEQ, HIDDEN)).astype(np.float32)
    padding = np.ones((2, SEQ), np.int32)
    padding[1, :3] = 0  # left padding: those query rows see no key and are ignored, as a loss mask does
    weights = RNG.standard_normal((2, SEQ, HIDDEN)).astype(np.float32)
    weights[1, :3] = 0
    out_exact, grads_exact = outputs_and_gradients(exact, x, padding, weights)
    out_block, grads_block = outputs_and_gradients(blockwise, x, padding, weights)
    np.testing.assert_allclose(out_block[0], out_exact[0], atol=1e-5)
    np.testing.assert_allclose(out_block[1, 3:], out_exact[1, 3:], atol=1e-5)
    assert len(grads_block) == len(grads_exact) == 5
    for mine, theirs in zip(grads_block, grads_exact):
        np.testing.assert_allclose(mine, theirs, atol=1e-5)


def test_blocks_skip_keys_that_no_row_can_see():
    assert block_plan(10, 4, 16, 0) == ((0, 4, 0), (4, 8, 0), (8, 10, 0))  # causal: up to the block's last row
    assert block_plan(10, 4, 16, 3) == ((0, 4, 0), (4, 8, 2), (8, 10, 6))  # window 3: from first row - 2
    assert block_plan(100, 4, 5, 0)[0] == (0, 20, 0)  # at most 5 blocks: 20 rows each


def test_config_switch_picks_blockwise_from_long_sequences_unless_told(path):
    """Blockwise from FUSED_CPU_MIN_SEQ on where the fused CPU kernel serves the attention (float32), else (kernels
    off, or float16 compute, which the kernel does not take) from BLOCKWISE_MIN_SEQ."""
    def picks(flag, seq, fused=False, dtype="float32"):
        config = LlamaConfig(seq_length=seq, use_flash_attention=flag, compute_dtype=dtype)
        return choices.use_blockwise_attention(config, fused)
    assert choices.FUSED_CPU_MIN_SEQ < choices.BLOCKWISE_MIN_SEQ
    long = choices.FUSED_CPU_MIN_SEQ if path == "fused" else choices.BLOCKWISE_MIN_SEQ
    assert picks(None, long) and picks(True, long) and not picks(False, long)
    assert not picks(None, long - 1) and not picks(True, long - 1)
    assert not picks(True, long, fused=True)  # Ascend's fused kernel instead
    assert picks(None, long, fused=True)  # unset: no fused kernel, blockwise still saves the memory
    assert not picks(None, choices.BLOCKWISE_MIN_SEQ - 1, dtype="float16")
    assert picks(None, choices.BLOCKWISE_MIN_SEQ, dtype="float16")


def test_training_step_in_graph_mode_matches_the_exact_attention(monkeypatch, path):
    """A 2-layer Llama with GQA and a sliding window: loss and every gradient, blockwise in graph mode against exact
    in PyNative (one graph compiled per path)."""
    def model(blockwise):
        monkeypatch.setattr(choices, "BLOCKWISE_MIN_SEQ", 0 if blockwise else 10 ** 9)
        ms.set_seed(0)
        net = LlamaForCausalLM(LlamaConfig(
            seq_length=SEQ, hidden_size=HIDDEN, num_layers=2, num_heads=4, n_kv_heads=2, vocab_size=64,
            sliding_window=4, compute_dtype="float32", use_fused_rms_norm=False))
        for layer in net.model.layers:
            if blockwise:
                expected_path(layer.attention, path)
        return net

    exact, blockwise = model(False), model(True)
    for (_, mine), (_, theirs) in zip(blockwise.parameters_and_names(), exact.parameters_and_names()):
        mine.set_data(theirs.data.copy())
    ids = Tensor(RNG.integers(1, 64, (2, SEQ + 1)).astype(np.int32))
    results = []
    for net in (exact, blockwise):
        if net is blockwise:
            ms.set_context(mode=ms.GRAPH_MODE)
        net.set_train(True)
        loss, grads = ms.value_and_grad(net, None, net.trainable_params())(ids)
        results.append((float(loss.asnumpy()), [g.asnumpy() for g in grads]))
    (loss_exact, grads_exact), (loss_block, grads_block) = results
    assert loss_block == pytest.approx(loss_exact, abs=1e-5)
    for mine, theirs in zip(grads_block, grads_exact):
        np.testing.assert_allclose(mine, theirs, atol=1e-5)


def test_without_a_compiler_the_composed_path_serves(monkeypatch, tmp_path, caplog):
    """No C++ compiler (or one that fails): a warning, no library and nothing left in the kernel cache, and
    blockwise attention runs on the composed primitives."""
    monkeypatch.setenv("MINDFORMERS_KERNEL_CACHE", str(tmp_path))
    for cxx, reason in [("no-such-compiler", "no C++ compiler"), ("false", "building the kernel failed")]:
        monkeypatch.setenv("CXX", cxx)
        build.library.cache_clear()
        try:
            with caplog.at_level("WARNING", logger="mindformers"):
                assert build.library(cpu_attention.SOURCE) is None
            assert reason in caplog.text
            assert not cpu_attention.available(ms.float32)
            assert isinstance(Attention(HIDDEN, 4, 4, SEQ, blockwise=True).blockwise, BlockwiseAttention)
        finally:
            build.library.cache_clear()
    assert not list(tmp_path.iterdir())


def test_kernel_is_compiled_once_into_the_cache(monkeypatch, tmp_path):
    """The first use builds the library (keyed by source, compiler, flags and CPU) into the cache; a later process
    (here: the in-process memo cleared) loads that file instead of building again."""
    if build.compiler() is None or build.onednn_dir() is None:
        pytest.skip("no C++ compiler or no oneDNN: the kernel is not built on this host")
    monkeypatch.setenv("MINDFORMERS_KERNEL_CACHE", str(tmp_path))
    build.library.cache_clear()
    try:
        path = build.library(cpu_attention.SOURCE)
        assert [str(p) for p in tmp_path.iterdir()] == [path]
        built = os.stat(path).st_mtime_ns
        build.library.cache_clear()
        assert build.library(cpu_attention.SOURCE) == path and os.stat(path).st_mtime_ns == built
    finally:
        build.library.cache_clear()


def test_fused_kernel_takes_mindspores_thread_count():
    """The kernel's OpenMP threads follow context.runtime_num_threads (several workers on one host share the cores);
    one thread gives the same numbers (up to the order in which the few-heads schedule sums the query gradient)."""
    if not cpu_attention.available(ms.float32):
        pytest.skip("the fused CPU kernel does not build here")
    default_threads = ms.get_context("runtime_num_threads")
    x = RNG.standard_normal((2, SEQ, HIDDEN)).astype(np.float32)
    padding = np.ones((2, SEQ), np.int32)
    weights = RNG.standard_normal((2, SEQ, HIDDEN)).astype(np.float32)
    results = []
    try:
        for threads in (default_threads, 1):
            ms.set_context(runtime_num_threads=threads)
            np.random.seed(0)  # the same initial weights both times
            _, blockwise = attention_pair(4, 2, None, False, "fused")
            assert float(blockwise.blockwise.config.asnumpy()[2]) == threads
            results.append(outputs_and_gradients(blockwise, x, padding, weights))
    finally:
        ms.set_context(runtime_num_threads=default_threads)
    (out_many, grads_many), (out_one, grads_one) = results
    np.testing.assert_allclose(out_one, out_many, atol=1e-6)
    for one, many in zip(grads_one, grads_many):
        np.testing.assert_allclose(one, many, atol=1e-6)


def exact_attention_and_gradients(q, k, v, keep, slopes, scale, window, weights):
    """context and d(sum(context * weights))/d(q, k, v) in float64 numpy, a row that sees no key giving zeros."""
    q, k, v, weights = (x.astype(np.float64) for x in (q, k, v, weights))
    repeats, seq = q.shape[1] // k.shape[1], q.shape[2]
    k, v = np.repeat(k, repeats, 1), np.repeat(v, repeats, 1)
    rows, cols = np.arange(seq)[:, None], np.arange(seq)[None, :]
    seen = (cols <= rows) & ((rows - cols < window) if window else True) & (keep[:, None, None, :] >= 0.5)
    scores = scale * q @ k.swapaxes(-1, -2) + slopes[None, :, None, None] * (rows - cols)
    scores = np.where(seen, scores, -np.inf)
    top = np.max(scores, -1, keepdims=True)
    probs = np.where(seen, np.exp(scores - np.where(np.isfinite(top), top, 0)), 0)
    probs /= np.maximum(probs.sum(-1, keepdims=True), 1e-300)
    d_probs = weights @ v.swapaxes(-1, -2)
    d_scores = probs * (d_probs - (d_probs * probs).sum(-1, keepdims=True))
    d_k, d_v = scale * d_scores.swapaxes(-1, -2) @ q, probs.swapaxes(-1, -2) @ weights
    grouped = (k.shape[0], -1, repeats) + k.shape[2:]
    return probs @ v, [scale * d_scores @ k, d_k.reshape(grouped).sum(2), d_v.reshape(grouped).sum(2)]


@pytest.mark.parametrize("batch,kv_heads,window,alibi,padding", [(1, 1, 0, True, 0), (2, 2, 70, False, 3)],
                         ids=["mqa-batch1-alibi", "gqa-window-across-tiles-left-padding"])
def test_fused_kernel_over_several_tiles_matches_exact_attention(batch, kv_heads, window, alibi, padding):
    """Sequences of several 64-row tiles (the last partial) and 512-key chunks, in the kernel's layout (tokens before
    heads): the key-tile backward (batch 1 MQA: threads share the key tiles, each adding dQ into its own copy; else a
    task per key/value head), the forward's online softmax across chunks, and a window crossing tiles."""
    if not cpu_attention.available(ms.float32):
        pytest.skip("the fused CPU kernel does not build here")
    heads, seq, dim, scale = 4, 600, 8, 8 ** -0.5
    q = RNG.standard_normal((batch, heads, seq, dim)).astype(np.float32)
    k, v = (RNG.standard_normal((batch, kv_heads, seq, dim)).astype(np.float32) for _ in range(2))
    weights = RNG.standard_normal(q.shape).astype(np.float32)
    keep = np.ones((batch, seq), np.float32)
    keep[-1, :padding] = 0
    weights[-1, :, :padding] = 0
    slopes = -np.linspace(0.1, 0.4, heads).astype(np.float32) if alibi else np.zeros(heads, np.float32)
    attention = cpu_attention.CpuFusedAttention(
        scale, window, Tensor(slopes.reshape(1, heads, 1, 1)) if alibi else None)
    tokens_first = [Tensor(np.ascontiguousarray(x.swapaxes(1, 2))) for x in (q, k, v, weights)]  # the kernel's layout
    context = attention(*tokens_first[:3], Tensor(keep))[0]
    grads = ms.grad(lambda *qkv: (attention(*qkv, Tensor(keep))[0] * tokens_first[3]).sum(), grad_position=(0, 1, 2))(
        *tokens_first[:3])
    context_exact, grads_exact = exact_attention_and_gradients(q, k, v, keep, slopes, scale, window, weights)
    np.testing.assert_allclose(context.asnumpy().swapaxes(1, 2), context_exact, atol=1e-5)
    for mine, theirs in zip(grads, grads_exact):
        np.testing.assert_allclose(mine.asnumpy().swapaxes(1, 2), theirs, atol=1e-5)
