"""Rotary position embedding (the half-split "rotate_half" layout HuggingFace Llama checkpoints use)."""
import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops


LLAMA3_SCALING_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


def llama3_scaled(inv_freq, factor, low_freq_factor, high_freq_factor, original_max_position_embeddings):
    """Llama 3.1's frequency-dependent context extension: wavelengths shorter than the original context divided by
    high_freq_factor keep their frequency, those longer than it divided by low_freq_factor are slowed by `factor`,
    and the band between blends the two linearly in original_context / wavelength."""
    wavelength = 2 * np.pi / inv_freq
    blend = (original_max_position_embeddings / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor)
    blend = np.clip(blend, 0.0, 1.0)  # 0: fully scaled (long wavelengths), 1: unchanged (short ones)
    return (1.0 - blend) * inv_freq / factor + blend * inv_freq


def rotary_tables(head_dim, max_positions, theta, scaling_factor=1.0):
    """cos/sin tables of shape (max_positions, head_dim), computed in float64 then stored as float32.

    scaling_factor: a number for linear position interpolation (positions / factor), or a mapping of
    LLAMA3_SCALING_KEYS for Llama 3.1's scaling (model_config extend_method "LLAMA3")."""
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    if isinstance(scaling_factor, dict):
        inv_freq = llama3_scaled(inv_freq, **{key: float(scaling_factor[key]) for key in LLAMA3_SCALING_KEYS})
    else:
        inv_freq = inv_freq / float(scaling_factor)
    freqs = np.outer(np.arange(max_positions, dtype=np.float64), inv_freq)
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


class RotaryEmbedding(nn.Cell):
    """Applies rotary embedding to (batch, heads, seq, head_dim) query/key tensors.

    rotate_half(x) = concat(-x2, x1) is computed as swap_halves(x) = concat(x2, x1), one gather, times a sin table
    whose first half is negated: three fewer kernels per rotation than slicing, negating and concatenating, which
    matters in a decode step where kernel launches cost more than the arithmetic."""

    def __init__(self, head_dim, max_positions, theta=10000.0, rotary_dtype=ms.float32, scaling_factor=1.0):
        super().__init__()
        cos, sin = rotary_tables(head_dim, max_positions, theta, scaling_factor)
        self.half = head_dim // 2
        sign = np.concatenate([-np.ones(self.half, np.float32), np.ones(head_dim - self.half, np.float32)])
        self.cos = Tensor(cos, dtype=rotary_dtype)
        self.sin = Tensor(sin, dtype=rotary_dtype)
        self.signed_sin = Tensor(sin * sign, dtype=rotary_dtype)
        self.swap_halves = Tensor(np.roll(np.arange(head_dim, dtype=np.int32), -self.half))
        self.rotary_dtype = rotary_dtype

    def rotate(self, x, cos, signed_sin):
        """x rotated by tables from `first` or `at` (cos and the signed sin)."""
        original_type = x.dtype
        x = ops.cast(x, self.rotary_dtype)
        return ops.cast(x * cos + ops.gather(x, self.swap_halves, x.ndim - 1) * signed_sin, original_type)

    def first(self, seq_length):
        """cos/signed sin (seq, head_dim) of positions 0 .. seq_length-1."""
        return self.cos[:seq_length], self.signed_sin[:seq_length]

    def at(self, positions):
        """cos/signed sin (batch, 1, seq, head_dim) at per-row positions (batch, seq): rows may start at different
        points."""
        batch, seq = positions.shape
        cos = ops.reshape(ops.gather(self.cos, positions, 0), (batch, 1, seq, -1))
        sin = ops.reshape(ops.gather(self.signed_sin, positions, 0), (batch, 1, seq, -1))
        return cos, sin

    def construct(self, query, key, seq_length):
        cos, sin = self.first(seq_length)
        return self.rotate(query, cos, sin), self.rotate(key, cos, sin)
