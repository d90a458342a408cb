"""A YAML-config-driven trainer for decoder LLMs of many families (Llama, Qwen, Gemma, Mistral, ...) on MindSpore."""
__version__ = "0.1.0"

from mindformers.tools import (ConfigError, DataError, MindFormerConfig, MindFormerModuleType, MindFormerRegister,
                               MindFormerUserError, build_from_config)
from mindformers import checkpoint, core, models, trainer, wrapper
from mindformers import dataset
from mindformers.core import callback, lr, metric, optim
from mindformers.models import LlamaConfig, LlamaForCausalLM
from mindformers.trainer import CausalLanguageModelingTrainer
from mindformers.pipeline import pipeline
from mindformers.generation import GenerationConfig, TextIteratorStreamer, TextStreamer
