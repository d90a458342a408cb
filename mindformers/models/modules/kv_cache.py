"""Attention over a key/value cache, for incremental decoding: the weights and math of an existing `Attention`.

Training never comes here: these functions read the Attention cell's projections, rotary tables and exact
attention, so generation and training share one set of weights and one softmax. Shapes stay static (the cache
is preallocated to its full length and written in place of a one-hot column), so graph mode compiles each step
once. Positions are per row (left-padded rows start at 0), so a padded row decodes as it would alone.
"""
from mindspore import ops


def rotary_at(rotary, positions):
    """cos/sin of shape (batch, 1, seq, head_dim) at per-row `positions` (batch, seq)."""
    batch, seq = positions.shape
    cos = ops.reshape(ops.gather(rotary.cos, positions, 0), (batch, 1, seq, -1))
    sin = ops.reshape(ops.gather(rotary.sin, positions, 0), (batch, 1, seq, -1))
    return cos, sin


def project(attn, x, cos, sin):
    """Rotated query (b, heads, s, d) and key, value (b, kv_heads, s, d) of hidden states x (b, s, hidden)."""
    query = attn.rotary.rotate(attn.split_heads(attn.wq(x), attn.num_heads), cos, sin)
    key = attn.rotary.rotate(attn.split_heads(attn.wk(x), attn.n_kv_heads), cos, sin)
    value = attn.split_heads(attn.wv(x), attn.n_kv_heads)
    return query, key, value


def attend(attn, query, key, value, blocked):
    """Output projection of attention of query over key/value; blocked (b, 1, s, keys) is 1 where not allowed."""
    batch, _, seq, _ = query.shape
    if getattr(attn, "prefix_tokens", 0):  # prefix tuning (mindformers/pet/prefix_tuning.py): trained keys in front
        key, value, blocked = attn.with_prefix(key, value, blocked)
    context = attn.exact_attention(query, attn.repeat_kv(key), attn.repeat_kv(value), blocked)
    context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (batch, seq, attn.num_heads * attn.head_dim))
    return attn.wo(context)


def write_column(cache, new, one_hot):
    """cache (b, kv, L, d) with column `one_hot` (1, 1, L, 1) replaced by new (b, kv, 1, d); exact for finite values."""
    return cache * (1.0 - one_hot) + new * one_hot


def prefill_attention(attn, x, cos, sin, blocked):
    """Attention over the prompt itself; returns the output and the prompt's keys and values (to seed the cache)."""
    query, key, value = project(attn, x, cos, sin)
    return attend(attn, query, key, value, blocked), key, value


def decode_attention(attn, x, cos, sin, blocked, key_cache, value_cache, one_hot):
    """One new token per row: write its key/value into the cache column, attend over the whole cache."""
    query, key, value = project(attn, x, cos, sin)
    key_cache = write_column(key_cache, key, one_hot)
    value_cache = write_column(value_cache, value, one_hot)
    return attend(attn, query, key_cache, value_cache, blocked), key_cache, value_cache
