from mindformers.models.codellama.codellama import CODELLAMA, CodeLlamaConfig, CodeLlamaForCausalLM
