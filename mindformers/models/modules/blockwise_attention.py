"""Memory-efficient exact attention for full forwards (training, and any forward without a KV cache) on any backend.

Today's attention (Attention.exact_attention) materialises every head's (seq, seq) scores and keeps the softmax
probabilities for the backward pass: at seq 8192 that is 2 GB per 8-head layer, twice. Here the queries go in
blocks of `block_size` rows; each block attends only to the key columns it can see (causal: up to the block's last
row; with a sliding window: from the window's start for the block's first row), so fully masked key blocks are
never computed. The forward keeps only the output and each row's log-sum-exp of its scores; the backward (a custom
`bprop`, the same in graph and PyNative mode) recomputes each block's probabilities from them, flash-attention
style. What stays alive is linear in the sequence length; the transient per block is (heads, block_size, keys).

Within a block the softmax runs over all the keys the block can see in one pass: on a CPU a few large matrix
products beat many small ones, and the block's key range is at most seq (or block_size + window) columns, so no
online (running max) rescaling across key blocks is needed.
"""
import numpy as np
import mindspore as ms
from mindspore import nn, ops

from mindformers.models.modules.index_constants import int_range
from mindformers.models.modules.positions import linear_bias

# Blocked scores become this (today's attention adds it, attention.MASK_VALUE): exp of either is 0 in float32.
MASK_VALUE = -10000.0


@ops.constexpr
def block_plan(seq, block_size, max_blocks, window):
    """((first row, end row, first key column), ...) of the query blocks of a forward over `seq` positions. Blocks
    have `block_size` rows, more when that would make over `max_blocks` of them (graph mode unrolls the block loop,
    and compile time grows with the count). A block's rows see key columns first key .. end row - 1 (the causal
    limit), and with a sliding window none before first row - window + 1."""
    block_size = max(block_size, -(-seq // max_blocks))
    plan = []
    for start in range(0, seq, block_size):
        end = min(start + block_size, seq)
        first_key = max(0, start - window + 1) if window else 0
        plan.append((start, end, first_key))
    return tuple(plan)


@ops.constexpr
def block_mask(start, end, first_key, window):
    """(rows, keys) bool constant: True where query row start.. must not see key column first_key.. (a later one,
    or with a sliding window one `window` or more columns back)."""
    rows = np.arange(start, end)[:, None]
    keys = np.arange(first_key, end)[None, :]
    blocked = keys > rows
    if window:
        blocked |= rows - keys >= window
    return ms.Tensor(blocked)


def broadcast_like(x, like):
    """x broadcast to like's shape explicitly. In graph mode on CPU (MindSpore 2.10) an elementwise op that
    broadcasts an operand implicitly (a row reduction over the keys, a mask over the heads) keeps its block-sized
    operands alive to the end of the graph, so every block's memory would add up; an explicit BroadcastTo does
    not (measured: 4.6 GB against 0.7 GB for 8 blocks of 512 rows at seq 4096)."""
    return ops.broadcast_to(x, like.shape)


def after(x, done):
    """x, read only once `done` is computed. A slice or mask taken straight from an input has no other inputs, so
    the graph computes every block's at the start, and merges the forward's with the backward's (the same inputs):
    they would all stay alive from the forward to the backward, in every layer."""
    return ops.depend(x, done)


class BlockwiseAttention(nn.Cell):
    """softmax(scale * q k^T + bias, blocked scores set to MASK_VALUE) v over the causal (and sliding-window) keys.

    Inputs: query (b, heads, s, d), key and value (b, kv_heads, s, d) with heads = repeats * kv_heads (GQA: the
    query heads sharing a key/value head are stacked as rows of one product, no copies of keys or values), keep
    (b or 1, s) float: 0 where a key is padding. Output (context (b, heads, s, d), log-sum-exp (b, kv_heads,
    repeats * s, 1) float32); callers use the context, the backward reads the log-sum-exp.
    `negative_slopes` (1, heads, 1, 1) float32 gives ALiBi's bias -slope * (query column - key column)."""

    def __init__(self, repeats, scale, block_size=512, max_blocks=16, sliding_window=0, negative_slopes=None,
                 compute_dtype=ms.float32, softmax_compute_type=ms.float32):
        super().__init__()
        self.max_blocks = max_blocks
        self.repeats = repeats
        self.scale = scale
        self.block_size = block_size
        self.sliding_window = sliding_window or 0
        self.has_bias = negative_slopes is not None
        self.negative_slopes = negative_slopes
        self.compute_dtype = compute_dtype
        self.softmax_compute_type = softmax_compute_type
        self.qk_matmul = ops.BatchMatMul(transpose_b=True)
        self.pv_matmul = ops.BatchMatMul()
        self.tn_matmul = ops.BatchMatMul(transpose_a=True)
        # The primitive, not ops.softmax: graph mode fails to compile ops.softmax's function graph used both here and
        # in the loss's custom bprop ("func graph is empty", MindSpore 2.10).
        self.softmax = ops.Softmax(-1)

    def grouped_rows(self, x, start, end):
        """Rows start..end-1 of (b, heads, s, d) as (b, kv_heads, repeats * rows, d)."""
        batch, heads, _, dim = x.shape
        rows = ops.reshape(x, (batch, heads // self.repeats, self.repeats, -1, dim))[:, :, :, start:end, :]
        return ops.reshape(rows, (batch, heads // self.repeats, self.repeats * (end - start), dim))

    def ungrouped(self, x, rows):
        """(b, kv_heads, repeats * rows, n) -> (b, kv_heads, repeats, rows, n)."""
        return ops.reshape(x, (x.shape[0], x.shape[1], self.repeats, rows, x.shape[-1]))

    def block_scores(self, q_rows, key, keep, start, end, first_key, row_offset=None):
        """Scores of query rows start..end-1 over key columns first_key..end-1, biased and masked, minus
        row_offset (b, kv_heads, repeats * rows, 1) when given, as (b, kv_heads, repeats, rows, keys). The offset
        rides in the matrix product as one more feature (-offset against a column of ones): a (rows, keys)
        subtraction would broadcast it (see broadcast_like)."""
        rows, keys = end - start, end - first_key
        key_block = after(key, q_rows)[:, :, first_key:end, :]
        if row_offset is None:  # the scale on the (rows, d) queries: one pass fewer over the (rows, keys) scores
            scores = ops.cast(self.qk_matmul(q_rows * self.scale, key_block), self.softmax_compute_type)
        else:
            q_rows = ops.concat((q_rows * self.scale, ops.cast(-row_offset, q_rows.dtype)), -1)
            key_block = ops.concat((key_block, ops.ones(key_block.shape[:-1] + (1,), key_block.dtype)), -1)
            scores = ops.cast(self.qk_matmul(q_rows, key_block), self.softmax_compute_type)
        scores = self.ungrouped(scores, rows)
        if self.has_bias:  # query head h is row h % repeats of key/value head h // repeats
            slopes = ops.reshape(self.negative_slopes, (1, -1, self.repeats, 1, 1))
            distance = int_range(start, end, (rows, 1)), int_range(first_key, end, (1, keys))
            scores = scores + broadcast_like(ops.cast(linear_bias(slopes, *distance), self.softmax_compute_type),
                                             scores)
        blocked = ops.logical_or(block_mask(start, end, first_key, self.sliding_window),
                                 ops.reshape(after(keep, q_rows)[:, first_key:end], (-1, 1, 1, 1, keys)) < 0.5)
        return ops.masked_fill(scores, broadcast_like(blocked, scores), ops.cast(MASK_VALUE, scores.dtype))

    def construct(self, query, key, value, keep):
        batch, heads, seq, dim = query.shape
        contexts = []
        lses = []
        done = query
        for start, end, first_key in block_plan(seq, self.block_size, self.max_blocks, self.sliding_window):
            q_rows = ops.depend(self.grouped_rows(query, start, end), done)
            scores = self.block_scores(q_rows, key, keep, start, end, first_key)
            probs = self.softmax(scores)
            # The row's largest probability is exp(max - lse), so lse = max - log(largest probability): two row
            # reductions, no (rows, keys) temporaries.
            lse = ops.amax(scores, -1, True) - ops.log(ops.amax(probs, -1, True))
            probs = ops.reshape(ops.cast(probs, self.compute_dtype), (batch, key.shape[1], -1, end - first_key))
            context = self.pv_matmul(probs, after(value, probs)[:, :, first_key:end, :])
            # the block's context waits for its lse: else the graph puts the lse (only the backward reads it) at
            # its first use, and every block's scores and probabilities stay alive until the backward
            context = ops.depend(context, lse)
            contexts.append(ops.reshape(context, (batch, key.shape[1], self.repeats, end - start, dim)))
            lses.append(lse)
            done = context
        context = ops.reshape(ops.concat(contexts, 3), (batch, heads, seq, dim))
        lse = ops.reshape(ops.concat(lses, 3), (batch, key.shape[1], self.repeats * seq, 1))
        return context, lse

    def bprop(self, query, key, value, keep, out, dout):
        """Recomputes each block's probabilities from the kept log-sum-exp (P = exp(S - lse)), then
        dV += P^T dO, dS = P * (dO V^T - rowsum(dO * O)), dQ = scale dS K, dK += scale dS^T Q."""
        batch, heads, seq, dim = query.shape
        kv_heads = key.shape[1]
        context, lse = out
        d_context = dout[0]
        row_dot = ops.sum(ops.cast(d_context, ms.float32) * ops.cast(context, ms.float32), -1, True)
        lse = ops.reshape(lse, (batch, kv_heads, self.repeats, seq, 1))
        d_query_blocks = []
        d_key = ops.zeros(key.shape, ms.float32)
        d_value = ops.zeros(value.shape, ms.float32)
        done = (d_key, d_value)
        for start, end, first_key in block_plan(seq, self.block_size, self.max_blocks, self.sliding_window):
            rows, keys = end - start, end - first_key
            # every product of the previous block done first (the graph may otherwise leave one, d_query say, to its
            # first use at the end, keeping that block's (rows, keys) operands alive)
            q_rows = ops.depend(self.grouped_rows(query, start, end), done)
            block_lse = ops.reshape(lse[:, :, :, start:end, :], (batch, kv_heads, self.repeats * rows, 1))
            probs = ops.exp(self.block_scores(q_rows, key, keep, start, end, first_key, block_lse))
            probs = ops.reshape(probs, (batch, kv_heads, self.repeats * rows, keys))
            d_rows = self.grouped_rows(d_context, start, end)
            block_value = after(value, q_rows)[:, :, first_key:end, :]
            d_value_block = self.tn_matmul(ops.cast(probs, self.compute_dtype), d_rows)
            # dO V^T - rowsum(dO * O) as one product, the row sums riding as one more feature (see block_scores)
            block_dot = ops.reshape(self.grouped_rows(row_dot, start, end), (batch, kv_heads, self.repeats * rows, 1))
            # scaled on the (rows, d + 1) side: one pass fewer over the (rows, keys) product
            scaled_rows = ops.concat((d_rows, ops.cast(-block_dot, d_rows.dtype)), -1) * self.scale
            d_probs = ops.cast(self.qk_matmul(
                scaled_rows,
                ops.concat((block_value, ops.ones(block_value.shape[:-1] + (1,), block_value.dtype)), -1)),
                               ms.float32)
            d_scores = ops.cast(probs * d_probs, self.compute_dtype)
            d_query = self.pv_matmul(d_scores, after(key, q_rows)[:, :, first_key:end, :])
            d_query_blocks.append(ops.reshape(d_query, (batch, kv_heads, self.repeats, rows, dim)))
            d_key_block = self.tn_matmul(d_scores, q_rows)
            d_key = d_key + self.spread(d_key_block, first_key, end, seq)
            d_value = d_value + self.spread(d_value_block, first_key, end, seq)
            done = (d_key, d_value, d_query)
        d_query = ops.reshape(ops.concat(d_query_blocks, 3), (batch, heads, seq, dim))
        return (ops.cast(d_query, query.dtype), ops.cast(d_key, key.dtype), ops.cast(d_value, value.dtype),
                ops.zeros_like(keep))

    @staticmethod
    def spread(block, first, end, seq):
        """(b, kv, end - first, d) block as float32 rows first..end-1 of (b, kv, seq, d), zeros elsewhere: padded, not
        concatenated with zero tensors (constants the compiled graph holds: 0.12 GiB per layer at seq 8192)."""
        block = ops.cast(block, ms.float32)
        if first == 0 and end == seq:
            return block
        return ops.pad(block, (0, 0, first, seq - end))
