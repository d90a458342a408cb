"""The key/value cache: step inputs built on the host and in a graph, in-place writes, beam reordering, and a decoder layer fed
through the cache computing what its full forward computes. PyNative, tiny shapes."""
import itertools

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

from mindformers.models.llama import LlamaConfig
from mindformers.models.decoder import DecoderLayer
from mindformers.models.modules.kv_cache import KVCache, layer_cache, step_inputs, step_inputs_in_graph


def reference_inputs(start, first_columns, seq, length, kv_heads, max_position, window):
    """The step inputs spelled out entry by entry."""
    batch = len(first_columns)
    columns = [start + i for i in range(seq)]
    positions = [[min(max(c - f, 0), max_position) for c in columns] for f in first_columns]
    blocked = np.zeros((batch, 1, seq, length), np.float32)
    for row, query, key in itertools.product(range(batch), range(seq), range(length)):
        later, padding = key > columns[query], key < first_columns[row]
        blocked[row, 0, query, key] = later or padding or bool(window and columns[query] - key >= window)
    slots = [(row * kv_heads + head) * length + c for row in range(batch) for head in range(kv_heads) for c in columns]
    return positions, blocked, slots, columns


class InGraph(nn.Cell):
    def __init__(self, cache, seq, window):
        super().__init__()
        self.cache, self.seq, self.window = cache, seq, window

    def construct(self, start, first_columns):
        return step_inputs_in_graph(start, first_columns, self.seq, self.cache, 7, self.window)


@pytest.mark.parametrize("where", ["host", "graph"])
@pytest.mark.parametrize("start,seq,window", [(0, 6, None), (6, 1, None), (9, 1, 3), (0, 10, 3)])
def test_step_inputs_match_their_definition(start, seq, window, where):
    """PyNative's host-built step inputs and the compiled step's (graph mode) are the same arrays."""
    first_columns = np.array([0, 4], np.int32)  # the second row is left padded by 4
    cache = KVCache(1, batch=2, kv_heads=3, length=10, head_dim=2)
    if where == "host":
        got = step_inputs(start, first_columns, seq, cache, 7, window)
    else:
        ms.set_context(mode=ms.GRAPH_MODE)
        try:
            got = [t.asnumpy() for t in InGraph(cache, seq, window)(Tensor([start], ms.int32), Tensor(first_columns))]
        finally:
            ms.set_context(mode=ms.PYNATIVE_MODE)
    expected = reference_inputs(start, first_columns, seq, 10, 3, 7, window)
    for name, value, want in zip(("positions", "blocked", "slots", "columns"), got, expected):
        assert value.dtype == (np.float32 if name == "blocked" else np.int32), name
        np.testing.assert_array_equal(value, want, err_msg=name)


def test_reorder_moves_whole_rows():
    cache = KVCache(2, batch=3, kv_heads=2, length=4, head_dim=5)
    tables = tuple(cache.keys) + tuple(cache.values)
    before = []
    for index, table in enumerate(tables):
        value = np.random.default_rng(index).normal(size=table.shape).astype(np.float32)
        table.set_data(Tensor(value))
        before.append(value.reshape(3, -1))
    cache.reorder(np.array([2, 2, 0]))
    for table, value in zip(tables, before):
        np.testing.assert_array_equal(table.asnumpy().reshape(3, -1), value[[2, 2, 0]])


@pytest.mark.parametrize("kv_heads,window", [(4, None), (2, None), (1, 3)], ids=["mha", "gqa", "mqa-window"])
def test_layer_through_the_cache_equals_its_full_forward(kv_heads, window):
    """A left-padded prompt run through the cache, then one token at a time, gives the full forward's outputs at
    every real position (the same layer, the same weights)."""
    np.random.seed(0)
    config = LlamaConfig(seq_length=16, hidden_size=16, num_layers=1, num_heads=4, n_kv_heads=kv_heads,
                         vocab_size=8, intermediate_size=32, compute_dtype="float32", sliding_window=window)
    layer = DecoderLayer(config, 0)
    pad, prompt, total = 2, 5, 9
    x = np.random.default_rng(1).normal(size=(1, total - pad, 16)).astype(np.float32)
    full = layer(Tensor(x)).asnumpy()
    cache = KVCache(1, batch=1, kv_heads=kv_heads, length=total, head_dim=4)

    def run(columns):
        grid = np.zeros((1, len(columns), 16), np.float32)
        real = [c - pad for c in columns]
        grid[0, [i for i, r in enumerate(real) if r >= 0]] = x[0, [r for r in real if r >= 0]]
        inputs = step_inputs(columns[0], [pad], len(columns), cache, 15, window)
        return layer(Tensor(grid), None, layer_cache(cache.layer_caches(*map(Tensor, inputs)), 0))

    out = run(list(range(prompt))).asnumpy()
    np.testing.assert_allclose(out[0, pad:], full[0, :prompt - pad], rtol=1e-5, atol=1e-5)
    for column in range(prompt, total):
        out = run([column]).asnumpy()
        np.testing.assert_allclose(out[0, 0], full[0, column - pad], rtol=1e-5, atol=1e-5)
