from mindformers.models.llama.llama_config import LlamaConfig
from mindformers.models.llama.llama import LlamaForCausalLM, LlamaModel
from mindformers.models.llama.llama_tokenizer import LlamaTokenizer
from mindformers.models.llama.llama_tokenizer_fast import LlamaTokenizerFast
from mindformers.models.llama.llama_processor import LlamaProcessor
from mindformers.models.llama.convert_mapping import LLAMA
