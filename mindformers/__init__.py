"""A YAML-config-driven trainer for decoder LLMs of many families (Llama, Qwen, Gemma, Mistral, ...) on MindSpore."""
__version__ = "0.1.0"

# before anything loads libgomp (importing mindspore does): it reads its wait policy once, when loaded
from mindformers.kernels.openmp_waits import quiet_openmp_waits  # noqa: E402  pylint: disable=C0413
quiet_openmp_waits()

from mindformers.tools import (ConfigError, DataError, MindFormerConfig, MindFormerModuleType, MindFormerRegister,
                               MindFormerUserError, build_from_config)
from mindformers import checkpoint, core, models, trainer, wrapper
from mindformers import dataset
from mindformers.core import callback, lr, metric, optim
from mindformers.models import LlamaConfig, LlamaForCausalLM
from mindformers.trainer import CausalLanguageModelingTrainer
from mindformers.pipeline import pipeline
from mindformers.generation import GenerationConfig, TextIteratorStreamer, TextStreamer
