"""Rotary position embedding: the half-split "rotate_half" layout HuggingFace Llama checkpoints use, or GLM's
interleaved pairs (features 2i and 2i+1 rotate together)."""
import numpy as np
import mindspore as ms
from mindspore import Tensor, ops

from mindformers.kernels import cpu_rotary
from mindformers.models.modules.positions import AttentionPosition


LLAMA3_SCALING_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


def llama3_scaled(inv_freq, factor, low_freq_factor, high_freq_factor, original_max_position_embeddings):
    """Llama 3.1's frequency-dependent context extension: wavelengths shorter than the original context divided by
    high_freq_factor keep their frequency, those longer than it divided by low_freq_factor are slowed by `factor`,
    and the band between blends the two linearly in original_context / wavelength."""
    wavelength = 2 * np.pi / inv_freq
    blend = (original_max_position_embeddings / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor)
    blend = np.clip(blend, 0.0, 1.0)  # 0: fully scaled (long wavelengths), 1: unchanged (short ones)
    return (1.0 - blend) * inv_freq / factor + blend * inv_freq


def rotary_tables(head_dim, max_positions, theta, scaling_factor=1.0, interleaved=False):
    """cos/sin tables of shape (max_positions, head_dim), computed in float64 then stored as float32 (head_dim: the
    rotated width, which is the rotary_dim of a partial rotary embedding). Frequency i sits at features i and
    i + head_dim/2, or `interleaved` at features 2i and 2i+1.

    scaling_factor: a number for linear position interpolation (positions / factor), or a mapping of
    LLAMA3_SCALING_KEYS for Llama 3.1's scaling (model_config extend_method "LLAMA3")."""
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    if isinstance(scaling_factor, dict):
        inv_freq = llama3_scaled(inv_freq, **{key: float(scaling_factor[key]) for key in LLAMA3_SCALING_KEYS})
    else:
        inv_freq = inv_freq / float(scaling_factor)
    freqs = np.outer(np.arange(max_positions, dtype=np.float64), inv_freq)
    emb = np.repeat(freqs, 2, axis=-1) if interleaved else np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


_TABLES = {}


def shared_rotary_tables(head_dim, max_positions, theta, scaling_factor, interleaved):
    """rotary_tables, computed once per process for each setting: every layer of a model asks for the same ones
    (30 layers of SmolLM2's 8192 positions took seconds at build time). Callers must not write into them."""
    key = (head_dim, max_positions, float(theta), interleaved,
           tuple(sorted(scaling_factor.items())) if isinstance(scaling_factor, dict) else float(scaling_factor))
    if key not in _TABLES:
        _TABLES.clear()  # one model's tables at a time
        _TABLES[key] = rotary_tables(head_dim, max_positions, theta, scaling_factor, interleaved)
    return _TABLES[key]


def rotary_tensors(head_dim, max_positions, theta, rotary_dtype, scaling_factor, rotary_dim, interleaved):
    """RotaryEmbedding's constant tensors: cos, sin and signed sin (max_positions, head_dim), each feature's
    partner, and the identity and swapping matrices of the one-token rotation (see RotaryEmbedding)."""
    cos, sin = shared_rotary_tables(rotary_dim, max_positions, theta, scaling_factor, interleaved)
    tail = head_dim - rotary_dim
    cos = np.concatenate([cos, np.ones((max_positions, tail), np.float32)], axis=-1)
    sin = np.concatenate([sin, np.zeros((max_positions, tail), np.float32)], axis=-1)
    features = np.arange(rotary_dim)
    if interleaved:
        partner, negated = features ^ 1, features % 2 == 0
    else:
        half = rotary_dim // 2
        partner, negated = np.roll(features, -half), features < half
    sign = np.concatenate([np.where(negated, -1.0, 1.0), np.ones(tail)]).astype(np.float32)
    partners = np.concatenate([partner, np.arange(rotary_dim, head_dim)])  # the feature each one pairs with
    # x @ (identity * cos + swapping * signed_sin) == x * cos + x[partners] * signed_sin, for row vectors x
    return (Tensor(cos, dtype=rotary_dtype), Tensor(sin, dtype=rotary_dtype), Tensor(sin * sign, dtype=rotary_dtype),
            Tensor(partners.astype(np.int32)), Tensor(np.eye(head_dim, dtype=np.float32), dtype=rotary_dtype),
            Tensor(np.eye(head_dim, dtype=np.float32)[partners].T, dtype=rotary_dtype))


_TENSORS = {}


def shared_rotary_tensors(head_dim, max_positions, theta, rotary_dtype, scaling_factor, rotary_dim, interleaved):
    """rotary_tensors, made once per process for each setting and shared by every layer asking for it (read-only
    constants; building them per layer took ~0.4 s of SmolLM2-135M's 30-layer build on the loaded machine)."""
    key = (head_dim, max_positions, float(theta), str(rotary_dtype), rotary_dim, interleaved,
           tuple(sorted(scaling_factor.items())) if isinstance(scaling_factor, dict) else float(scaling_factor))
    if key not in _TENSORS:
        _TENSORS.clear()  # one model's tensors at a time
        _TENSORS[key] = rotary_tensors(head_dim, max_positions, theta, rotary_dtype, scaling_factor, rotary_dim,
                                       interleaved)
    return _TENSORS[key]


class RotaryEmbedding(AttentionPosition):
    """Applies rotary embedding to (batch, heads, seq, head_dim) query/key tensors.

    rotate_half(x) = concat(-x2, x1) is computed as x[partners] = concat(x2, x1) times a sin table whose first half
    is negated, so nothing is negated per rotation (partner_features says how the partners are read). With
    `interleaved` (GLM) the partners are neighbours and the sin table is negated at even features, so
    (x_2i, x_2i+1) -> (x_2i cos - x_2i+1 sin, x_2i+1 cos + x_2i sin) the same way. For one token per row
    (a decode step) the rotation is a (head_dim, head_dim) matrix per row, so one matrix product rotates every
    head: in a decode step kernel launches cost more than the arithmetic.

    With `rotary_dim` < head_dim (partial rotary) only each head's leading rotary_dim features rotate, by the
    frequencies of a rotary_dim-wide rotary embedding; the tables hold cos 1 and sin 0 over the rest, so the same
    kernels pass those features through unchanged."""

    def __init__(self, head_dim, max_positions, theta=10000.0, rotary_dtype=ms.float32, scaling_factor=1.0,
                 rotary_dim=None, interleaved=False):
        super().__init__()
        (self.cos, self.sin, self.signed_sin, self.partners, self.identity,
         self.swapping) = shared_rotary_tensors(head_dim, max_positions, theta, rotary_dtype, scaling_factor,
                                                rotary_dim or head_dim, interleaved)
        self.rotary_dtype = rotary_dtype
        self.rotary_dim = rotary_dim or head_dim
        self.interleaved = interleaved
        self.rotate_rows = ops.BatchMatMul()
        # on CPU a float32 half-split rotation of every feature is one kernel pass (kernels/cpu_rotary.py)
        serves = (not interleaved and self.rotary_dim == head_dim and rotary_dtype == ms.float32
                  and cpu_rotary.available(ms.float32))
        self.cpu_kernel = cpu_rotary.CpuRotary() if serves else None

    def partner_features(self, x):
        """x[..., partners]. The half-split layout swaps the halves by slices and a concat, whose backward is slices
        and a concat too, where a gather's is two transposes and a segment sum (a (2, 8, 1024, 64) rotation's
        forward + backward in a graph: 19 ms against 27 ms). Interleaved pairs keep the gather: swapping them by
        slices of a (..., d/2, 2) view measured slower than it."""
        if self.interleaved:
            return ops.gather(x, self.partners, x.ndim - 1)
        half, rotated = self.rotary_dim // 2, self.rotary_dim
        passed = (x[..., rotated:],) if rotated < x.shape[-1] else ()  # partial rotary: sin is 0 over these
        return ops.concat((x[..., half:rotated], x[..., :half]) + passed, -1)

    def rotate(self, x, tables):
        """x (b, heads, s, d) rotated by the tables from `first` or `at`."""
        original_type = x.dtype
        x = ops.cast(x, self.rotary_dtype)
        if len(tables) == 1:  # a rotation matrix per row, for one token per row
            batch, heads, seq, dim = x.shape
            rotated = ops.reshape(self.rotate_rows(ops.reshape(x, (batch, heads * seq, dim)), tables[0]), x.shape)
        else:
            cos, signed_sin = tables
            if self.cpu_kernel is not None and cos.ndim <= 3:  # first()'s tables, not per-row ones from at()
                rotated = self.cpu_kernel(x, cos, signed_sin)
            else:
                rotated = x * cos + self.partner_features(x) * signed_sin
        return ops.cast(rotated, original_type)

    def first(self, seq_length):
        """Tables of positions 0 .. seq_length-1: cos and signed sin (seq, head_dim)."""
        return self.cos[:seq_length], self.signed_sin[:seq_length]

    def at(self, positions, columns=None):  # pylint: disable=unused-argument
        """Tables of per-row positions (batch, seq), as rows may start at different points: cos and signed sin
        (batch, 1, seq, head_dim), or for seq 1 the rotation matrix of each row (batch, head_dim, head_dim)."""
        batch, seq = positions.shape
        cos = ops.reshape(ops.gather(self.cos, positions, 0), (batch, 1, seq, -1))
        sin = ops.reshape(ops.gather(self.signed_sin, positions, 0), (batch, 1, seq, -1))
        if seq > 1:
            return cos, sin
        cos, sin = ops.reshape(cos, (batch, 1, -1)), ops.reshape(sin, (batch, 1, -1))
        return (self.identity * cos + self.swapping * sin,)

    def construct(self, query, key, seq_length):
        tables = self.first(seq_length)
        return self.rotate(query, tables), self.rotate(key, tables)
