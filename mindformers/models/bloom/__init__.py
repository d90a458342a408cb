from mindformers.models.bloom.bloom import BLOOM, BloomConfig, BloomForCausalLM
