"""Rotary position embedding (the half-split "rotate_half" layout HuggingFace Llama checkpoints use)."""
import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops


def rotary_tables(head_dim, max_positions, theta, scaling_factor=1.0):
    """cos/sin tables of shape (max_positions, head_dim), computed in float64 then stored as float32."""
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    positions = np.arange(max_positions, dtype=np.float64) / scaling_factor
    freqs = np.outer(positions, inv_freq)
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


class RotaryEmbedding(nn.Cell):
    """Applies rotary embedding to (batch, heads, seq, head_dim) query/key tensors."""

    def __init__(self, head_dim, max_positions, theta=10000.0, rotary_dtype=ms.float32, scaling_factor=1.0):
        super().__init__()
        cos, sin = rotary_tables(head_dim, max_positions, theta, scaling_factor)
        self.cos = Tensor(cos, dtype=rotary_dtype)
        self.sin = Tensor(sin, dtype=rotary_dtype)
        self.half = head_dim // 2
        self.rotary_dtype = rotary_dtype

    def rotate(self, x, cos, sin):
        original_type = x.dtype
        x = ops.cast(x, self.rotary_dtype)
        x1 = x[..., :self.half]
        x2 = x[..., self.half:]
        rotated = ops.concat((-x2, x1), -1)
        return ops.cast(x * cos + rotated * sin, original_type)

    def construct(self, query, key, seq_length):
        cos = self.cos[:seq_length]
        sin = self.sin[:seq_length]
        return self.rotate(query, cos, sin), self.rotate(key, cos, sin)
