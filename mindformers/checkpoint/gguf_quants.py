"""Dequantization of llama.cpp's GGML block formats to float32, vectorised over all blocks of a tensor.

Each quantized row is a run of fixed-size blocks; a block holds fp16 scale(s) and packed integers:

    Q8_0  (32 values, 34 bytes):  d, int8 q[32]                    x = d * q
    Q4_0  (32 values, 18 bytes):  d, nibbles q[32]                 x = d * (q - 8)
    Q4_1  (32 values, 20 bytes):  d, m, nibbles q[32]              x = d * q + m
    Q4_K  (256 values, 144 bytes): d, dmin, 6-bit scales/mins of 8 sub-blocks, nibbles q[256]
                                   x = d * scale_j * q - dmin * min_j
    Q6_K  (256 values, 210 bytes): low nibbles ql[128], high bit pairs qh[64], int8 scales[16], d
                                   x = d * scale_j * (q - 32)

In the 32-value formats the low nibbles of the 16 bytes are values 0..15 and the high nibbles 16..31. Tests check
every format against the gguf package's reference dequantize.
"""
import numpy as np

from mindformers.tools.errors import ConfigError

BLOCK = {"Q8_0": (32, 34), "Q4_0": (32, 18), "Q4_1": (32, 20), "Q4_K": (256, 144), "Q6_K": (256, 210)}
FLOAT_TYPES = ("F32", "F16", "BF16")


def _fp16(raw, start, stop):
    """The fp16 field at bytes [start, stop) of every block, as float32 column (blocks, 1)."""
    return raw[:, start:stop].copy().view(np.float16).astype(np.float32)


def _nibbles(packed):
    """(blocks, n) bytes -> (blocks, 2n): low nibbles first, then high nibbles."""
    return np.concatenate([packed & 0x0F, packed >> 4], axis=1).astype(np.float32)


def _q8_0(raw):
    return _fp16(raw, 0, 2) * raw[:, 2:].view(np.int8).astype(np.float32)


def _q4_0(raw):
    return _fp16(raw, 0, 2) * (_nibbles(raw[:, 2:]) - 8.0)


def _q4_1(raw):
    return _fp16(raw, 0, 2) * _nibbles(raw[:, 4:]) + _fp16(raw, 2, 4)


def _k_scales_and_mins(packed):
    """The eight 6-bit (scale, min) pairs of a Q4_K block from its 12 scale bytes: pairs 0-3 sit in the low six
    bits of bytes 0-3 / 4-7; pairs 4-7 take four bits from bytes 8-11 and their top two from bytes 0-7."""
    packed = packed.astype(np.uint8)
    scales = np.empty((packed.shape[0], 8), np.float32)
    mins = np.empty((packed.shape[0], 8), np.float32)
    scales[:, :4] = packed[:, 0:4] & 63
    mins[:, :4] = packed[:, 4:8] & 63
    scales[:, 4:] = (packed[:, 8:12] & 0x0F) | ((packed[:, 0:4] >> 6) << 4)
    mins[:, 4:] = (packed[:, 8:12] >> 4) | ((packed[:, 4:8] >> 6) << 4)
    return scales, mins


def _q4_k(raw):
    d, dmin = _fp16(raw, 0, 2), _fp16(raw, 2, 4)
    scales, mins = _k_scales_and_mins(raw[:, 4:16])
    qs = raw[:, 16:144].reshape(-1, 4, 32)  # four groups of 32 bytes, each two sub-blocks of 32 values
    q = np.stack([qs & 0x0F, qs >> 4], axis=2).reshape(-1, 8, 32).astype(np.float32)
    return (d[:, :, None] * scales[:, :, None] * q - dmin[:, :, None] * mins[:, :, None]).reshape(-1, 256)


def _q6_k(raw):
    ql = raw[:, 0:128].reshape(-1, 2, 64)     # per half of 128 values: 64 bytes of low nibbles
    qh = raw[:, 128:192].reshape(-1, 2, 32)   # per half: 32 bytes of 2-bit high parts
    scales = raw[:, 192:208].view(np.int8).astype(np.float32).reshape(-1, 2, 8)
    d = _fp16(raw, 208, 210)
    # Within a half, value l + 32*k (k = 0..3) takes its low nibble from ql[l + 32*(k % 2)] (low/high nibble for
    # k < 2 / k >= 2) and its high bits from qh[l] >> 2k.
    low = np.stack([ql[:, :, :32] & 0x0F, ql[:, :, 32:] & 0x0F, ql[:, :, :32] >> 4, ql[:, :, 32:] >> 4], axis=2)
    high = np.stack([(qh >> shift) & 3 for shift in (0, 2, 4, 6)], axis=2)
    q = (low | (high << 4)).astype(np.float32) - 32.0             # (blocks, 2, 4, 32)
    scale = scales.reshape(-1, 2, 4, 2)                            # 16 values share a scale
    values = q.reshape(-1, 2, 4, 2, 16) * scale[..., None]
    return (d[:, :, None] * values.reshape(-1, 256)[:, None, :]).reshape(-1, 256)


_DEQUANTIZE = {"Q8_0": _q8_0, "Q4_0": _q4_0, "Q4_1": _q4_1, "Q4_K": _q4_k, "Q6_K": _q6_k}


def dequantize(data, type_name, shape, where="gguf"):
    """float32 array of `shape` (numpy order) from a tensor's stored data of GGML type `type_name`."""
    if type_name == "F32":
        return np.asarray(data, dtype=np.float32).reshape(shape)
    if type_name == "F16":
        return np.asarray(data).view(np.float16).astype(np.float32).reshape(shape)
    if type_name == "BF16":
        bits = np.asarray(data).view(np.uint16).astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    if type_name not in _DEQUANTIZE:
        raise ConfigError(f"{where}: GGML type {type_name} is not supported (supported: "
                          f"{', '.join(FLOAT_TYPES + tuple(_DEQUANTIZE))})")
    values, nbytes = BLOCK[type_name]
    raw = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1, nbytes)
    return _DEQUANTIZE[type_name](raw).reshape(shape)
