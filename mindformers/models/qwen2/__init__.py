from mindformers.models.qwen2.qwen2_tokenizer import Qwen2Tokenizer
