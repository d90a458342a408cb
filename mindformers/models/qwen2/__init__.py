from mindformers.models.qwen2.qwen2 import QWEN2, Qwen2Config, Qwen2ForCausalLM
from mindformers.models.qwen2.qwen2_tokenizer import Qwen2Tokenizer
