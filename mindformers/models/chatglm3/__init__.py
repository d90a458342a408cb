from mindformers.models.chatglm3.chatglm3 import CHATGLM3, ChatGLM3Config, ChatGLM3ForCausalLM
from mindformers.models.chatglm3.chatglm3_tokenizer import ChatGLM3Tokenizer
