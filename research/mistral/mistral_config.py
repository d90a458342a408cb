"""MistralConfig: a LlamaConfig whose defaults are Mistral-7B-32K's and whose attention looks back a window."""
from mindformers.models.llama.llama_config import LlamaConfig
from mindformers.tools.errors import ConfigError
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister

# Mistral-7B as published (ModelLink's Mistral-7B-32K scripts, HF mistralai/Mistral-7B-Instruct-v0.2 sizes).
MISTRAL_7B = dict(seq_length=32768, hidden_size=4096, num_layers=32, num_heads=32, n_kv_heads=8,
                  intermediate_size=14336, vocab_size=32000, rms_norm_eps=1e-5, theta=1000000.0,
                  sliding_window=4096, bos_token_id=1, eos_token_id=2, compute_dtype="bfloat16")


@MindFormerRegister.register(MindFormerModuleType.CONFIG)
class MistralConfig(LlamaConfig):
    model_type = "mistral"

    def __init__(self, **kwargs):
        for key, value in MISTRAL_7B.items():
            kwargs.setdefault(key, value)
        super().__init__(**kwargs)

    def validate(self, where="model.model_config"):
        super().validate(where)
        window = self.sliding_window
        if window is not None and (not isinstance(window, int) or isinstance(window, bool) or window < 1):
            raise ConfigError(f"{where}.sliding_window: expected a positive integer or null, got {window!r}")
