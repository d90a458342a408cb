"""LlamaConfig: the Llama family's config (Llama 2 MHA and Llama 3 GQA alike), as MindFormers' YAML spells it.

Every key of the shared decoder is accepted (see mindformers/models/decoder/config.py), so MindFormers' Llama-based
YAMLs for other families (Qwen1.5 with qkv_has_bias, Yi, CodeLlama, ...) build with `type: LlamaConfig` too.
"""
from mindformers.models.decoder.config import DecoderConfig, ffn_hidden_size  # noqa: F401  (imported from here)
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister


@MindFormerRegister.register(MindFormerModuleType.CONFIG)
class LlamaConfig(DecoderConfig):
    """Defaults are Llama 2 7B's; Llama 3 is GQA, theta 500000 and vocab 128256 (configs/llama3)."""

    model_type = "llama"
