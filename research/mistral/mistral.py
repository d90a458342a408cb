"""MistralForCausalLM: the Llama causal LM built from a MistralConfig (sliding window comes from the config)."""
from mindformers.models.llama.llama import LlamaForCausalLM
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister

from .mistral_config import MistralConfig


@MindFormerRegister.register(MindFormerModuleType.MODELS)
class MistralForCausalLM(LlamaForCausalLM):
    config_class = MistralConfig
