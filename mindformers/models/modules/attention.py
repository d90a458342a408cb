"""Causal self-attention with grouped-query heads, exact on every backend, fused on Ascend by switch."""
import math

import numpy as np
import mindspore as ms
from mindspore import nn, ops

from mindformers.kernels import cpu_attention
from mindformers.models.modules import kv_cache
from mindformers.models.modules.blockwise_attention import BlockwiseAttention
from mindformers.models.modules.index_constants import int_range
from mindformers.models.modules.linear import Linear
from mindformers.models.modules.rotary import RotaryEmbedding
from mindformers.parallel.tensor_parallel import keep_local_shards, local_size

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
    """Multi-head attention; n_kv_heads < num_heads gives GQA (each key/value head serves a group of queries).

    head_dim defaults to hidden_size / num_heads but may be set apart from it (Gemma: 256). Biases: `has_bias` on
    the q/k/v projections, `out_bias` on the output projection. With `qkv_concat` the q/k/v projections are one
    weight (w_qkv: q's rows, then k's, then v's), as MindFormers' qkv_concat checkpoints store them. `position` is
    the position encoding (an AttentionPosition: rotary embedding rotating queries and keys, ALiBi biasing the
    scores, or none); by default a rotary embedding of theta, rope_scaling_factor and rotary_dim (partial rotary).

    Full forwards (training, and forwards without a KV cache) attend in one of three ways: `use_flash_attention`,
    MindSpore's fused FlashAttentionScore (Ascend); `blockwise`, memory-efficient exact attention (memory linear
    in the sequence length): on CPU in float32 the fused C++ kernel (mindformers/kernels/cpu_attention.py) when it
    builds, else blockwise_attention.py's composed primitives (any backend); otherwise exact_attention, which
    materialises the (seq, seq) scores. Generation steps (with a cache) take the fused or the exact path."""

    def __init__(self, hidden_size, num_heads, n_kv_heads, seq_length, theta=10000.0, compute_dtype=ms.float32,
                 param_init_type=ms.float32, softmax_compute_type=ms.float32, rotary_dtype=ms.float32,
                 init_std=0.02, use_flash_attention=False, sliding_window=None, has_bias=False,
                 rope_scaling_factor=1.0, head_dim=None, out_bias=False, qkv_concat=False, rotary_dim=None,
                 position=None, blockwise=False):
        super().__init__()
        # Heads this rank computes (all of them until `parallelize` splits the layer).
        self.num_heads = num_heads
        self.n_kv_heads = n_kv_heads
        self.head_dim = head_dim or hidden_size // num_heads
        self.repeats = num_heads // n_kv_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.compute_dtype = compute_dtype
        self.param_dtype = param_init_type
        self.softmax_compute_type = softmax_compute_type
        self.use_flash_attention = use_flash_attention
        q_size, kv_size = num_heads * self.head_dim, n_kv_heads * self.head_dim
        linear = dict(compute_dtype=compute_dtype, param_init_type=param_init_type, init_std=init_std)
        self.qkv_concat = qkv_concat
        if qkv_concat:
            self.w_qkv = Linear(hidden_size, q_size + 2 * kv_size, has_bias=has_bias, parallel="column", **linear)
            self.qkv_sizes = (q_size, kv_size, kv_size)
        else:
            self.wq = Linear(hidden_size, q_size, has_bias=has_bias, parallel="column", **linear)
            self.wk = Linear(hidden_size, kv_size, has_bias=has_bias, parallel="column", **linear)
            self.wv = Linear(hidden_size, kv_size, has_bias=has_bias, parallel="column", **linear)
        self.wo = Linear(q_size, hidden_size, has_bias=out_bias, parallel="row", **linear)
        if position is None:
            position = RotaryEmbedding(self.head_dim, seq_length, theta, rotary_dtype, rope_scaling_factor,
                                       rotary_dim)
        self.position = position
        self.sliding_window = sliding_window or 0
        self.qk_matmul = ops.BatchMatMul(transpose_b=True)
        self.pv_matmul = ops.BatchMatMul()
        self.blockwise = None
        if blockwise and not use_flash_attention and cpu_attention.available(compute_dtype, softmax_compute_type):
            self.blockwise = cpu_attention.CpuFusedAttention(self.scale, sliding_window=self.sliding_window,
                                                             negative_slopes=position.linear_bias_slopes())
        elif blockwise and not use_flash_attention:
            self.blockwise = BlockwiseAttention(self.repeats, self.scale, sliding_window=self.sliding_window,
                                                negative_slopes=position.linear_bias_slopes(),
                                                compute_dtype=compute_dtype, softmax_compute_type=softmax_compute_type)

    def parallelize(self, groups):
        """Stand-alone model parallelism (CPU): each rank computes a consecutive block of query heads and the
        key/value heads serving them, so GQA groups stay whole (wq/wk/wv split their outputs, wo its inputs, and the
        position encoding its per-head slopes; those hooks ran first). Parameters added to the layer (prefix
        tuning's) split as its param_layout declares."""
        self.num_heads = local_size(self.num_heads, groups)
        self.n_kv_heads = local_size(self.n_kv_heads, groups)
        if self.blockwise is not None:
            self.blockwise.negative_slopes = self.position.linear_bias_slopes()
        if getattr(self, "param_layout", None):
            keep_local_shards(self, groups)

    def project_qkv(self, x):
        """Queries, keys and values (b, s, width) of x, from three projections or the fused one."""
        if self.qkv_concat:
            return ops.split(self.w_qkv(x), self.qkv_sizes, -1)
        return self.wq(x), self.wk(x), self.wv(x)

    def split_heads(self, x, heads):
        batch, seq, _ = x.shape
        return ops.transpose(ops.reshape(x, (batch, seq, heads, self.head_dim)), (0, 2, 1, 3))

    def blocked_positions(self, seq, attention_mask):
        """(b or 1, 1, s, s) with 1 where attention is blocked, from the causal mask and an optional padding mask."""
        # Built from positions on the fly rather than kept as a (seq_length, seq_length) buffer per layer: at 32K
        # positions such a buffer is 4 GB per layer, while the comparison costs far less than the scores themselves.
        rows = int_range(0, seq, (seq, 1))
        cols = int_range(0, seq, (1, seq))
        blocked = kv_cache.causally_blocked(rows, cols, self.sliding_window)
        blocked = ops.reshape(ops.cast(blocked, ms.float32), (1, 1, seq, seq))
        if attention_mask is not None:
            padding = 1.0 - ops.cast(ops.reshape(attention_mask, (attention_mask.shape[0], 1, 1, seq)), ms.float32)
            blocked = ops.maximum(blocked, padding)
        return blocked

    @staticmethod
    def kept_keys(seq, attention_mask):
        """(b or 1, s) float32, 0 at padding keys (attention_mask 0), for blockwise attention."""
        if attention_mask is None:
            return ops.ones((1, seq), ms.float32)
        return ops.cast(attention_mask, ms.float32)

    def output(self, context, batch, seq):
        """(b, heads, s, d) attention context -> (b, s, hidden) through the output projection."""
        context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (batch, seq, self.num_heads * self.head_dim))
        return self.wo(context)

    def construct(self, x, attention_mask=None, cache=None):
        """x (b, s, hidden) -> (b, s, hidden). Training and full forwards attend within x: causal, positions
        0..s-1, keys blocked where attention_mask (b, s) is 0. Generation passes `cache` instead (built by
        mindformers/models/modules/kv_cache.py): per-row positions (b, s), blocked (b, 1, s, keys), the slots of
        the new keys and this layer's key and value tables; the new keys and values are written into the tables in
        place, and every step (a chunk of a prompt or one new token) attends over all L cached columns."""
        batch, seq, _ = x.shape
        query, key, value = self.project_qkv(x)
        if cache is None and isinstance(self.blockwise, cpu_attention.CpuFusedAttention):
            return self.attend_tokens_first(query, key, value, attention_mask, batch, seq)
        query = self.split_heads(query, self.num_heads)
        key = self.split_heads(key, self.n_kv_heads)
        value = self.split_heads(value, self.n_kv_heads)
        if cache is None:
            tables = self.position.first(seq)
        else:
            tables = self.position.at(kv_cache.positions_of(cache), kv_cache.columns_of(cache))
        query = self.position.rotate(query, tables)
        key = self.position.rotate(key, tables)
        if cache is None and self.blockwise is not None:
            context, _ = self.blockwise(query, key, value, self.kept_keys(seq, attention_mask))
            return self.output(context, batch, seq)
        if cache is None:
            blocked = self.blocked_positions(seq, attention_mask)
        else:
            blocked = kv_cache.blocked_of(cache)
            key, value = kv_cache.write(cache, key, value)
        bias = self.position.score_bias(tables, key.shape[2])
        return self.output(self.attend(query, key, value, blocked, bias), batch, seq)

    def attend_tokens_first(self, query, key, value, attention_mask, batch, seq):
        """A full forward through the fused CPU kernel, which takes q, k, v and gives its context as (b, s, heads, d):
        the projections' (b, s, width) reshaped, no transposes (forward or backward). The rotary tables (s, d)
        broadcast over the heads as (s, 1, d)."""
        query = ops.reshape(query, (batch, seq, self.num_heads, self.head_dim))
        key = ops.reshape(key, (batch, seq, self.n_kv_heads, self.head_dim))
        value = ops.reshape(value, (batch, seq, self.n_kv_heads, self.head_dim))
        tables = self.position.first(seq)
        if isinstance(self.position, RotaryEmbedding):
            tables = tuple(ops.expand_dims(table, 1) for table in tables)
        query, key = self.position.rotate(query, tables), self.position.rotate(key, tables)
        context, _ = self.blockwise(query, key, value, self.kept_keys(seq, attention_mask))
        return self.wo(ops.reshape(context, (batch, seq, self.num_heads * self.head_dim)))

    def attend(self, query, key, value, blocked, bias=None):
        """(b, heads, s, d) context of queries over keys/values (b, kv_heads, k, d); blocked (b|1, 1, s, k); bias
        (1, heads, s, k) float32 is added to the scores (ALiBi) when given."""
        if self.use_flash_attention:
            return self.fused_attention(query, key, value, blocked, bias)
        return self.exact_attention(query, key, value, blocked, bias)

    def exact_attention(self, query, key, value, blocked, bias=None):
        """Softmax attention in softmax_compute_type. The query heads that share a key/value head are stacked as
        rows of one matrix product, so GQA makes no copies of the keys and values (CPU BatchMatMul cannot
        broadcast batch dims)."""
        batch, heads, seq, dim = query.shape
        kv_heads, keys = key.shape[1], key.shape[2]
        grouped = ops.reshape(query, (batch, kv_heads, self.repeats * seq, dim))
        scores = ops.cast(self.qk_matmul(grouped, key), self.softmax_compute_type) * self.scale
        scores = ops.reshape(scores, (batch, kv_heads, self.repeats, seq, keys))
        if bias is not None:  # query head h is row h % repeats of key/value head h // repeats
            scores = scores + ops.reshape(ops.cast(bias, self.softmax_compute_type),
                                          (1, kv_heads, self.repeats, seq, keys))
        mask = ops.reshape(ops.cast(blocked, self.softmax_compute_type), (blocked.shape[0], 1, 1, seq, keys))
        probs = ops.cast(ops.softmax(scores + mask * MASK_VALUE, -1), self.compute_dtype)
        context = self.pv_matmul(ops.reshape(probs, (batch, kv_heads, self.repeats * seq, keys)), value)
        return ops.reshape(context, (batch, heads, seq, dim))

    def fused_attention(self, query, key, value, blocked, bias=None):
        """MindSpore's FlashAttentionScore (Ascend only): handles GQA itself when given fewer key/value heads; a
        score bias goes in as its position shift (real_shift), in the queries' dtype."""
        mask = ops.cast(ops.broadcast_to(blocked, (query.shape[0], 1, query.shape[2], key.shape[2])), ms.uint8)
        shift = None if bias is None else ops.cast(bias, query.dtype)
        return ops.flash_attention_score(query, key, value, self.num_heads, real_shift=shift, attn_mask=mask,
                                         scalar_value=self.scale, input_layout="BNSD")
