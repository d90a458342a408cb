from mindformers.models.gpt3.gpt3 import GPT2, GPT3Config, GPT3ForCausalLM
from mindformers.models.gpt3.gpt2_tokenizer import GPT2Tokenizer
