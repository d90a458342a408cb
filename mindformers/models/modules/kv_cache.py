"""The key/value cache of incremental decoding, and the attention inputs a cached forward derives from it.

A cache is preallocated for one (batch, length) bucket and held as Parameters, so a step writes only its new
columns, in place, and graph mode compiles each bucket once. Each layer's keys (and values) are one flat
(batch * kv_heads * length, head_dim) table written with ScatterUpdate over its rows: MindSpore's CPU
ScatterNdUpdate copies the whole tensor on every call, ScatterUpdate does not. A decode step reads the table as
(batch, kv_heads, length, head_dim); that reshape of a Parameter is a copy on CPU, the one per-step cost that grows
with the cache. Every step, a prompt's chunk as much as one new token, attends over the whole table (the columns
it must not see are blocked), so a long prompt can run in chunks of a fixed size (see
mindformers/generation/decoding_state.py).

Masks, positions and write slots follow from the first new column and each row's first real column (rows are left
padded). PyNative builds them on the host in numpy (step_inputs) and sends four small tensors: as ~15 small ops run
one by one they took 3-4 ms of a decode step, ~0.02 ms in numpy. A compiled graph derives them itself from those two
(step_inputs_in_graph): there the kernels cost less than four more graph inputs (~1-3 ms a step, measured in one
process). Positions count from a row's first real token, so a padded row decodes exactly as it would alone.
"""
import numpy as np
import mindspore as ms
from mindspore import Parameter, ParameterTuple, nn, ops

from mindformers.models.modules.index_constants import int_range


class KVCache(nn.Cell):
    """Keys and values of `num_layers` layers for `batch` rows of `length` columns."""

    def __init__(self, num_layers, batch, kv_heads, length, head_dim, dtype=ms.float32):
        super().__init__()
        self.batch, self.kv_heads, self.length, self.head_dim = batch, kv_heads, length, head_dim
        shape = (batch * kv_heads * length, head_dim)

        def tables(kind):
            return ParameterTuple(Parameter(ops.zeros(shape, dtype), name=f"kv_cache.{kind}.{layer}",
                                            requires_grad=False) for layer in range(num_layers))

        self.keys = tables("key")
        self.values = tables("value")

    def layer_caches(self, positions, blocked, slots, columns):
        """The `cache` argument of DecoderModel: the step inputs of step_inputs, then every layer's key and value
        tables."""
        return positions, blocked, slots, columns, self.keys, self.values

    def reorder(self, sources):
        """Beam search: row r continues from row sources[r] (numpy ints); runs eagerly, outside the step."""
        index = ms.Tensor(sources, ms.int32)
        for table in tuple(self.keys) + tuple(self.values):
            rows = ops.reshape(table, (self.batch, -1))
            ops.assign(table, ops.reshape(ops.gather(rows, index, 0), table.shape))


def layer_cache(cache, index):
    """Layer `index`'s share of DecoderModel's `cache`: (positions, blocked, slots, columns, key table, value
    table)."""
    if cache is None:
        return None
    positions, blocked, slots, columns, keys, values = cache
    return positions, blocked, slots, columns, keys[index], values[index]


def causally_blocked(queries, keys, window):
    """True where a query at column `queries` must not see a key at column `keys` (int32 tensors or numpy arrays
    that broadcast): a later key, or with a sliding window one `window` or more columns back. The one rule for
    training forwards (Attention.blocked_positions) and generation steps (both step_inputs)."""
    blocked = keys > queries
    if window:
        either = np.logical_or if isinstance(blocked, np.ndarray) else ops.logical_or
        blocked = either(blocked, queries - keys >= window)
    return blocked


def step_inputs(start, first_columns, seq, cache, max_position, window):
    """For `seq` new tokens per row at columns start .. start+seq-1 of rows whose real tokens begin at
    first_columns (batch,), as numpy arrays:
      positions (batch, seq) int32 for the rotary tables (clamped to the table),
      blocked (batch, 1, seq, length) float32, 1 where a query must not see a key column of the table (the future,
      left padding, beyond the sliding window),
      slots (batch * kv_heads * seq,) int32 the table rows the new keys and values go to,
      columns (seq,) int32 the new tokens' columns (ALiBi's distances are between columns)."""
    batch = len(first_columns)
    columns = np.arange(start, start + seq, dtype=np.int32)
    first = np.asarray(first_columns, np.int32).reshape(batch, 1)
    positions = np.clip(columns[None, :] - first, 0, max_position).astype(np.int32)
    queries = columns.reshape(1, 1, seq, 1)
    keys = np.arange(cache.length, dtype=np.int32).reshape(1, 1, 1, cache.length)
    blocked = causally_blocked(queries, keys, window) | (keys < first.reshape(batch, 1, 1, 1))
    rows = np.arange(0, batch * cache.kv_heads * cache.length, cache.length, dtype=np.int32)
    slots = (rows[:, None] + columns[None, :]).reshape(-1)
    return positions, blocked.astype(np.float32), slots, columns


def step_inputs_in_graph(start, first_columns, seq, cache, max_position, window):
    """step_inputs as tensors computed in a graph, from start (1,) and first_columns (batch,) int32 tensors."""
    batch = first_columns.shape[0]
    columns = int_range(0, seq, (seq,)) + start
    first = ops.reshape(first_columns, (batch, 1))
    positions = ops.clip_by_value(ops.reshape(columns, (1, seq)) - first, 0, max_position)
    queries = ops.reshape(columns, (1, 1, seq, 1))
    keys = int_range(0, cache.length, (1, 1, 1, cache.length))
    blocked = ops.logical_or(causally_blocked(queries, keys, window), keys < ops.reshape(first, (batch, 1, 1, 1)))
    rows = int_range(0, batch * cache.kv_heads * cache.length, (-1, 1), cache.length)
    slots = ops.reshape(rows + ops.reshape(columns, (1, seq)), (-1,))
    return positions, ops.cast(blocked, ms.float32), slots, columns


def positions_of(cache):
    return cache[0]


def blocked_of(cache):
    return cache[1]


def columns_of(cache):
    return cache[3]


def write(cache, key, value):
    """Put a layer's new keys and values (batch, kv_heads, seq, head_dim) into its tables (a layer_cache). Returns
    the keys and values to attend to: the tables as (batch, kv_heads, length, head_dim) after the write."""
    slots, key_table, value_table = cache[2], cache[4], cache[5]
    batch, kv_heads, _, head_dim = key.shape
    # The tables are read back through depend (written first): a traced layer graph (layerwise_compile) would take
    # the tensor ScatterUpdate returns in PyNative for a constant, as it is not the traced input.
    key_table = ops.depend(key_table, ops.scatter_update(key_table, slots, ops.reshape(key, (-1, head_dim))))
    value_table = ops.depend(value_table, ops.scatter_update(value_table, slots, ops.reshape(value, (-1, head_dim))))
    # a Parameter reshaped is a copy on CPU (as the one-hot rewrite was), but the write itself is in place
    heads = (batch, kv_heads, -1, head_dim)
    return ops.reshape(key_table, heads), ops.reshape(value_table, heads)
