from mindformers.models.gemma.gemma import GEMMA, GemmaConfig, GemmaForCausalLM
