"""Text generation: generate() with a KV cache, sampling and beam search, streamers and the predict pipeline."""
from mindformers.generation.generation_config import GenerationConfig
from mindformers.generation.generation_mixin import GenerationMixin
from mindformers.generation.streamers import TextIteratorStreamer, TextStreamer
