"""LlamaForCausalLM: the shared decoder (mindformers/models/decoder) configured by a LlamaConfig."""
from mindformers.models.decoder import DecoderModel, causal_lm_class
from mindformers.models.llama.llama_config import LlamaConfig

LlamaModel = DecoderModel  # the decoder stack, under the name MindFormers users know
LlamaForCausalLM = causal_lm_class("LlamaForCausalLM", LlamaConfig)
