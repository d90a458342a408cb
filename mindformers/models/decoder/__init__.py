"""The one configurable decoder every family is built from (see config.py for the choices it offers)."""
from mindformers.models.decoder.config import DecoderConfig, ffn_hidden_size
from mindformers.models.decoder.layer import DecoderLayer
from mindformers.models.decoder.causal_lm import CacheSpec, DecoderForCausalLM, DecoderModel, causal_lm_class
