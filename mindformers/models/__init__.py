"""The model families: each a config class over the shared decoder (mindformers/models/decoder) and its HF mapping,
with its tokenizer where the family's differs."""
from mindformers.models.llama import LlamaConfig, LlamaForCausalLM, LlamaModel
from mindformers.models.llama import LlamaProcessor, LlamaTokenizer, LlamaTokenizerFast
from mindformers.models.tokenization_fast import PreTrainedTokenizerFast
from mindformers.models.tokenization_sentencepiece import SentencePieceTokenizer
from mindformers.models.tokenization_utils import BatchEncoding, MindFormerTokenizer, check_tokenizer_fits_model
from mindformers.models.aquila2 import Aquila2Config, Aquila2ForCausalLM
from mindformers.models.baichuan2 import Baichuan2Config, Baichuan2ForCausalLM
from mindformers.models.bloom import BloomConfig, BloomForCausalLM
from mindformers.models.chatglm3 import ChatGLM3Config, ChatGLM3ForCausalLM, ChatGLM3Tokenizer
from mindformers.models.code_llama import CodeLlamaConfig, CodeLlamaForCausalLM, CodeLlamaTokenizer
from mindformers.models.gemma import GemmaConfig, GemmaForCausalLM
from mindformers.models.gpt3 import GPT2Tokenizer, GPT3Config, GPT3ForCausalLM
from mindformers.models.internlm import InternLMConfig, InternLMForCausalLM
from mindformers.models.mistral import MistralConfig, MistralForCausalLM
from mindformers.models.mixtral import MixtralConfig, MixtralForCausalLM
from mindformers.models.qwen2 import Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer
from mindformers.models.yi import YiConfig, YiForCausalLM
from mindformers.models.auto import AutoModelForCausalLM
