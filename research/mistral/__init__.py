"""Mistral moved into the core (mindformers/models/mistral, configs/mistral): it is the shared decoder with a
sliding window, nothing of its own. This folder stays so `--register_path research/mistral` and its YAML names keep
working; importing it registers nothing new."""
from mindformers.models.mistral import MISTRAL, MistralConfig, MistralForCausalLM  # noqa: F401
