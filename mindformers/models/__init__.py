from mindformers.models.llama import LlamaConfig, LlamaForCausalLM, LlamaModel
from mindformers.models.llama import LlamaProcessor, LlamaTokenizer, LlamaTokenizerFast
from mindformers.models.tokenization_utils import BatchEncoding, MindFormerTokenizer, check_tokenizer_fits_model
