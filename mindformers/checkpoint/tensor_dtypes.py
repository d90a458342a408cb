"""Tensor dtypes as each checkpoint format spells them, and casts between them on raw numpy buffers.

Conversion works on raw bytes so it needs neither torch nor a numpy bfloat16 type: bfloat16 is carried as
uint16 bit patterns and converted with integer arithmetic.
"""
import numpy as np

from mindformers.tools.errors import ConfigError

# Canonical names are safetensors' ("F32", "BF16", ...). numpy holds BF16 as its uint16 bit pattern.
NUMPY = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
ITEMSIZE = {name: np.dtype(kind).itemsize for name, kind in NUMPY.items()}
CKPT_TYPE = {
    "F64": "Float64", "F32": "Float32", "F16": "Float16", "BF16": "BFloat16",
    "I64": "Int64", "I32": "Int32", "I16": "Int16", "I8": "Int8", "U8": "UInt8", "BOOL": "Bool",
}
FROM_CKPT_TYPE = {value: key for key, value in CKPT_TYPE.items()}
FLOATS = ("F32", "F16", "BF16")

# What users type (--dtype, YAML dtype keys, HF config "dtype") -> canonical.
ALIASES = {
    "fp32": "F32", "float32": "F32", "f32": "F32",
    "fp16": "F16", "float16": "F16", "f16": "F16", "half": "F16",
    "bf16": "BF16", "bfloat16": "BF16",
}
YAML_NAME = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def canonical(name, key="--dtype"):
    """'fp16' / 'float16' / 'F16' -> 'F16'; anything else is a user error naming `key`."""
    if name is None:
        return None
    text = str(name).replace("torch.", "")
    if text.upper() in FLOATS:
        return text.upper()
    try:
        return ALIASES[text.lower()]
    except KeyError:
        raise ConfigError(f"{key}: expected one of fp32, fp16, bf16, got {name!r}") from None


def _bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _f32_to_bf16(values):
    """Round to nearest even, as torch and MindSpore do; NaNs stay (quiet) NaNs instead of rounding to inf."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = ((bits + (((bits >> 16) & 1) + 0x7FFF)) >> 16).astype(np.uint16)
    nan = np.isnan(values)
    if nan.any():
        rounded[nan] = ((bits[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded


def cast(array, src, dst):
    """Cast a flat numpy buffer of dtype `src` to `dst` (canonical names); a no-op when they agree."""
    if src == dst:
        return array
    if src == "BF16":
        array, src = _bf16_to_f32(array), "F32"
    if dst == "BF16":
        return _f32_to_bf16(array.astype(np.float32, copy=False))
    return array.astype(NUMPY[dst])
