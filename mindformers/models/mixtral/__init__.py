from mindformers.models.mixtral.mixtral import MIXTRAL, MixtralConfig, MixtralForCausalLM
