"""The model families: each a config class over the shared decoder (mindformers/models/decoder) and its HF mapping."""
from mindformers.models.llama import LlamaConfig, LlamaForCausalLM, LlamaModel
from mindformers.models.llama import LlamaProcessor, LlamaTokenizer, LlamaTokenizerFast
from mindformers.models.aquila2 import Aquila2Config, Aquila2ForCausalLM
from mindformers.models.codellama import CodeLlamaConfig, CodeLlamaForCausalLM
from mindformers.models.gemma import GemmaConfig, GemmaForCausalLM
from mindformers.models.internlm import InternLMConfig, InternLMForCausalLM
from mindformers.models.mistral import MistralConfig, MistralForCausalLM
from mindformers.models.mixtral import MixtralConfig, MixtralForCausalLM
from mindformers.models.qwen2 import Qwen2Config, Qwen2ForCausalLM
from mindformers.models.yi import YiConfig, YiForCausalLM
from mindformers.models.tokenization_utils import BatchEncoding, MindFormerTokenizer, check_tokenizer_fits_model
