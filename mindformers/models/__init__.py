from mindformers.models.llama import LlamaConfig, LlamaForCausalLM, LlamaModel
