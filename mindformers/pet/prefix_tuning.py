"""Prefix tuning: every attention layer gets prefix_token_num trainable key/value vectors that all queries
attend to, placed before the sequence; the base model is frozen.

Prefix keys carry no rotary position (they are not tokens of the text), and padding masks never hide them.
With mid_dim > 0 the prefixes are produced by a small per-layer projection, tanh(E W1^T) W2^T (E: one
mid_dim vector per prefix token), which trains more stably than free vectors; without it the keys and
values are the parameters themselves. The attention cell gains the prefix in place (its class becomes
PrefixAttention), so every base weight keeps its name and base checkpoints load unchanged.
"""
from mindspore import Parameter, nn, ops

from mindformers.models.modules.attention import Attention
from mindformers.models.modules.deferred_init import host_tensor, normal_values


def _normal(shape, std, dtype):
    """Drawn as the base model's weights are (a float32 stream per weight from the seeded global RNG)."""
    return host_tensor(normal_values(std, shape), dtype)


class PrefixAttention(Attention):
    """Attention over [prefix; sequence] keys/values; made by `add_prefix`, never constructed directly."""

    def prefix_key_value(self):
        """(n_kv_heads, P, head_dim) keys and values."""
        if self.prefix_projection:
            hidden = ops.tanh(self.prefix_matmul(self.prefix_embedding, self.prefix_mlp_in))
            flat = self.prefix_matmul(hidden, self.prefix_mlp_out)  # (P, 2 * kv_size)
            key, value = ops.split(flat, self.n_kv_heads * self.head_dim, axis=1)
        else:
            key, value = self.prefix_key, self.prefix_value
        key = ops.transpose(ops.reshape(key, (self.prefix_tokens, self.n_kv_heads, self.head_dim)), (1, 0, 2))
        value = ops.transpose(ops.reshape(value, (self.prefix_tokens, self.n_kv_heads, self.head_dim)), (1, 0, 2))
        return self.prefix_dropout(ops.cast(key, self.compute_dtype)), \
            self.prefix_dropout(ops.cast(value, self.compute_dtype))

    def with_prefix(self, key, value, blocked):
        """Keys/values (b, kv_heads, s, d) with the prefixes put in front, and blocked (b|1, 1, q, s) widened by
        prefix columns that are never blocked."""
        batch, queries = key.shape[0], blocked.shape[2]
        prefix_key, prefix_value = self.prefix_key_value()
        shape = (batch, self.n_kv_heads, self.prefix_tokens, self.head_dim)
        key = ops.concat((ops.broadcast_to(ops.expand_dims(prefix_key, 0), shape), key), 2)
        value = ops.concat((ops.broadcast_to(ops.expand_dims(prefix_value, 0), shape), value), 2)
        visible = ops.zeros((blocked.shape[0], 1, queries, self.prefix_tokens), blocked.dtype)
        return key, value, ops.concat((visible, blocked), -1)

    def attend(self, query, key, value, blocked, bias=None):
        """Attention.attend over [prefix; keys], for full forwards and cached generation alike; a score bias
        (ALiBi) is zero on the prefix columns, which are not tokens of the text."""
        key, value, blocked = self.with_prefix(key, value, blocked)
        if bias is not None:
            bias = ops.concat((ops.zeros(bias.shape[:-1] + (self.prefix_tokens,), bias.dtype), bias), -1)
        # exact attention on every backend: the fused kernel's mask layout has no room for the prefix columns
        return self.exact_attention(query, key, value, blocked, bias)


def add_prefix(attention, prefix_tokens, mid_dim=0, dropout=0.0, init_std=0.02):
    """Give `attention` (a plain, whole layer) its prefixes, at the whole key/value width; with CPU model
    parallelism `parallelize` then cuts them to this rank's heads (like wk/wv), so the run starts from the single
    process' prefixes."""
    dtype = attention.param_dtype
    kv_size = attention.n_kv_heads * attention.head_dim
    attention.__class__ = PrefixAttention
    # The blockwise and fused-kernel paths (long sequences) take keys from the sequence alone and never call
    # `attend`: a prefixed layer attends exactly at every length, or its prefixes would be silently dropped.
    attention.blockwise = None
    attention.prefix_tokens = prefix_tokens
    attention.prefix_projection = mid_dim > 0
    attention.prefix_matmul = ops.MatMul(transpose_b=True)
    attention.prefix_dropout = nn.Dropout(p=float(dropout)) if dropout else nn.Identity()
    if mid_dim > 0:
        attention.prefix_embedding = Parameter(_normal((prefix_tokens, mid_dim), 1.0, dtype), name="prefix_embedding")
        attention.prefix_mlp_in = Parameter(_normal((mid_dim, mid_dim), mid_dim ** -0.5, dtype), name="prefix_mlp_in")
        attention.prefix_mlp_out = Parameter(_normal((2 * kv_size, mid_dim), init_std, dtype), name="prefix_mlp_out")
        layout = {"prefix_embedding": None, "prefix_mlp_in": None, "prefix_mlp_out": 0}
    else:
        attention.prefix_key = Parameter(_normal((prefix_tokens, kv_size), init_std, dtype), name="prefix_key")
        attention.prefix_value = Parameter(_normal((prefix_tokens, kv_size), init_std, dtype), name="prefix_value")
        layout = {"prefix_key": 1, "prefix_value": 1}  # split by heads, like wk/wv outputs
    attention.param_layout = dict(getattr(attention, "param_layout", {}), **layout)
    return attention


def apply_prefix_tuning(network, config):
    """Add prefixes to every Attention cell of `network`; returns their cell names."""
    names = []
    for name, cell in network.cells_and_names():
        if isinstance(cell, Attention) and not isinstance(cell, PrefixAttention):
            add_prefix(cell, config.prefix_token_num, config.mid_dim, config.dropout_rate)
            names.append(name)
    return names


def is_prefix_parameter(name):
    return name.rsplit(".", 1)[-1].startswith("prefix_")


__all__ = ["PrefixAttention", "add_prefix", "apply_prefix_tuning", "is_prefix_parameter"]
