from mindformers.models.mistral.mistral import MISTRAL, MistralConfig, MistralForCausalLM
