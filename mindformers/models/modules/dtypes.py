"""Names of dtypes as YAML spells them, mapped to MindSpore dtypes."""
import mindspore as ms

from mindformers.tools.errors import ConfigError

DTYPES = {
    "float32": ms.float32, "fp32": ms.float32,
    "float16": ms.float16, "fp16": ms.float16,
    "bfloat16": ms.bfloat16, "bf16": ms.bfloat16,
}


def to_ms_dtype(name, key="dtype"):
    if not isinstance(name, str):
        return name
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise ConfigError(f"{key}: expected one of float32, float16, bfloat16, got {name!r}") from None
