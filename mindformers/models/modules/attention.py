"""Causal self-attention with grouped-query heads, exact on every backend, fused on Ascend by switch."""
import math

import numpy as np
import mindspore as ms
from mindspore import nn, ops

from mindformers.models.modules.linear import Linear
from mindformers.models.modules.rotary import RotaryEmbedding

# Large enough to zero a softmax weight, small enough to stay finite in float16.
MASK_VALUE = -10000.0


def causal_mask(seq_length, sliding_window=None):
    """(seq, seq) float32 with 1 where a query must not see a key: the future (and, with a window, the far past)."""
    rows = np.arange(seq_length)[:, None]
    cols = np.arange(seq_length)[None, :]
    blocked = cols > rows
    if sliding_window:
        blocked |= cols <= rows - sliding_window
    return blocked.astype(np.float32)


class Attention(nn.Cell):
    """Multi-head attention; n_kv_heads < num_heads gives GQA (each key/value head serves a group of queries)."""

    def __init__(self, hidden_size, num_heads, n_kv_heads, seq_length, theta=10000.0, compute_dtype=ms.float32,
                 param_init_type=ms.float32, softmax_compute_type=ms.float32, rotary_dtype=ms.float32,
                 init_std=0.02, use_flash_attention=False, sliding_window=None, has_bias=False,
                 rope_scaling_factor=1.0):
        super().__init__()
        self.num_heads = num_heads
        self.n_kv_heads = n_kv_heads
        self.head_dim = hidden_size // num_heads
        self.repeats = num_heads // n_kv_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.compute_dtype = compute_dtype
        self.softmax_compute_type = softmax_compute_type
        self.use_flash_attention = use_flash_attention
        kv_size = n_kv_heads * self.head_dim
        linear = dict(compute_dtype=compute_dtype, param_init_type=param_init_type, init_std=init_std)
        self.wq = Linear(hidden_size, hidden_size, has_bias=has_bias, parallel="column", **linear)
        self.wk = Linear(hidden_size, kv_size, has_bias=has_bias, parallel="column", **linear)
        self.wv = Linear(hidden_size, kv_size, has_bias=has_bias, parallel="column", **linear)
        self.wo = Linear(hidden_size, hidden_size, parallel="row", **linear)
        self.rotary = RotaryEmbedding(self.head_dim, seq_length, theta, rotary_dtype, rope_scaling_factor)
        self.sliding_window = sliding_window or 0
        self.qk_matmul = ops.BatchMatMul(transpose_b=True)
        self.pv_matmul = ops.BatchMatMul()

    def split_heads(self, x, heads):
        batch, seq, _ = x.shape
        return ops.transpose(ops.reshape(x, (batch, seq, heads, self.head_dim)), (0, 2, 1, 3))

    def repeat_kv(self, x):
        """(b, kv, s, d) -> (b, kv*repeats, s, d) with explicit copies: CPU BatchMatMul cannot broadcast batch dims."""
        if self.repeats == 1:
            return x
        batch, kv, seq, dim = x.shape
        x = ops.broadcast_to(ops.expand_dims(x, 2), (batch, kv, self.repeats, seq, dim))
        return ops.reshape(x, (batch, kv * self.repeats, seq, dim))

    def blocked_positions(self, seq, attention_mask):
        """(b or 1, 1, s, s) with 1 where attention is blocked, from the causal mask and an optional padding mask."""
        # Built from positions on the fly rather than kept as a (seq_length, seq_length) buffer per layer: at 32K
        # positions such a buffer is 4 GB per layer, while the comparison costs far less than the scores themselves.
        rows = ops.reshape(ops.arange(seq, dtype=ms.int32), (seq, 1))
        cols = ops.reshape(ops.arange(seq, dtype=ms.int32), (1, seq))
        blocked = cols > rows
        if self.sliding_window:
            blocked = ops.logical_or(blocked, cols <= rows - self.sliding_window)
        blocked = ops.reshape(ops.cast(blocked, ms.float32), (1, 1, seq, seq))
        if attention_mask is not None:
            padding = 1.0 - ops.cast(ops.reshape(attention_mask, (attention_mask.shape[0], 1, 1, seq)), ms.float32)
            blocked = ops.maximum(blocked, padding)
        return blocked

    def rotated_qkv(self, x, seq):
        """Query, key and value heads (b, heads, s, d) of x, query and key rotated."""
        query = self.split_heads(self.wq(x), self.num_heads)
        key = self.split_heads(self.wk(x), self.n_kv_heads)
        value = self.split_heads(self.wv(x), self.n_kv_heads)
        query, key = self.rotary(query, key, seq)
        return query, key, value

    def output(self, context, batch, seq):
        """(b, heads, s, d) attention context -> (b, s, hidden) through the output projection."""
        context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (batch, seq, self.num_heads * self.head_dim))
        return self.wo(context)

    def construct(self, x, attention_mask=None):
        batch, seq, _ = x.shape
        query, key, value = self.rotated_qkv(x, seq)
        blocked = self.blocked_positions(seq, attention_mask)
        if self.use_flash_attention:
            context = self.fused_attention(query, key, value, blocked)
        else:
            context = self.exact_attention(query, self.repeat_kv(key), self.repeat_kv(value), blocked)
        return self.output(context, batch, seq)

    def exact_attention(self, query, key, value, blocked):
        scores = self.qk_matmul(query, key)
        scores = ops.cast(scores, self.softmax_compute_type) * self.scale
        scores = scores + ops.cast(blocked, self.softmax_compute_type) * MASK_VALUE
        probs = ops.cast(ops.softmax(scores, -1), self.compute_dtype)
        return self.pv_matmul(probs, value)

    def fused_attention(self, query, key, value, blocked):
        """MindSpore's FlashAttentionScore (Ascend only): handles GQA itself when given fewer key/value heads."""
        mask = ops.cast(ops.broadcast_to(blocked, (query.shape[0], 1, query.shape[2], query.shape[2])), ms.uint8)
        return ops.flash_attention_score(query, key, value, self.num_heads, attn_mask=mask,
                                         scalar_value=self.scale, input_layout="BNSD")
