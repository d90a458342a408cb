from mindformers.models.internlm.internlm import INTERNLM, InternLMConfig, InternLMForCausalLM
