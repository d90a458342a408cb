"""Mistral: Llama's decoder with sliding-window attention and GQA. Join a run with --register_path research/mistral.

Everything except the defaults and the HF names is the core Llama code (mindformers.models.llama and
mindformers.models.modules, whose Attention already takes `sliding_window`).
"""
from .mistral_config import MistralConfig
from .mistral import MistralForCausalLM
from .convert_mapping import MISTRAL
