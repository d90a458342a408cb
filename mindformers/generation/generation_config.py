"""GenerationConfig: the options of `generate`, defaulted from the model config (the YAML's model_config)."""
import dataclasses
from typing import List, Optional, Union

from mindformers.tools.errors import ConfigError

# model_config keys that set generation defaults (MindFormers' YAML spells them this way).
_FROM_MODEL_CONFIG = ("max_decode_length", "max_new_tokens", "do_sample", "top_k", "top_p", "repetition_penalty",
                      "temperature", "num_beams", "use_past", "eos_token_id", "pad_token_id", "transposed_weights")


@dataclasses.dataclass
class GenerationConfig:
    max_new_tokens: Optional[int] = None     # new tokens per row; wins over max_decode_length
    max_decode_length: int = 1024            # prompt + new tokens per row (MindFormers' max_length)
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0                           # 0: no top-k filter
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    num_beams: int = 1
    length_penalty: float = 1.0              # beam search: score / generated_length ** length_penalty
    early_stopping: bool = False             # beam search: stop once num_beams hypotheses are finished
    eos_token_id: Optional[Union[int, List[int]]] = None
    pad_token_id: int = 0
    stop_strings: Optional[Union[str, List[str]]] = None
    seed: Optional[int] = None
    use_past: bool = True                    # incremental decoding with the KV cache
    length_bucket: int = 16                  # prompt and cache lengths round up to this (fewer graph compiles)
    prefill_chunk_tokens: int = 64           # a longer prompt grid runs in steps of this many tokens (whole batch)
    transposed_weights: bool = True          # CPU: decode through (in, out) copies of the weights (faster, more memory)

    @classmethod
    def from_model_config(cls, model_config):
        values = {}
        for key in _FROM_MODEL_CONFIG:
            value = getattr(model_config, key, None)
            if value is not None:
                values[key] = value
        return cls(**values)

    def updated(self, **options):
        """A copy with `options` applied (None leaves a default), validated; an unknown option is an error."""
        known = {field.name for field in dataclasses.fields(self)}
        for key in options:
            if key not in known:
                raise ConfigError(f"generate: unknown option {key!r} (expected one of {', '.join(sorted(known))})")
        config = dataclasses.replace(self, **{k: v for k, v in options.items() if v is not None})
        config.validate()
        return config

    @property
    def eos_ids(self):
        if self.eos_token_id is None:
            return []
        return [self.eos_token_id] if isinstance(self.eos_token_id, int) else list(self.eos_token_id)

    @property
    def stop_list(self):
        if not self.stop_strings:
            return []
        return [self.stop_strings] if isinstance(self.stop_strings, str) else list(self.stop_strings)

    def validate(self):
        def fail(key, expected):
            raise ConfigError(f"generate: {key}: expected {expected}, got {getattr(self, key)!r}")

        def is_int(value):
            return isinstance(value, int) and not isinstance(value, bool)

        if self.max_new_tokens is not None and (not is_int(self.max_new_tokens) or self.max_new_tokens < 1):
            fail("max_new_tokens", "a positive integer")
        if not is_int(self.max_decode_length) or self.max_decode_length < 1:
            fail("max_decode_length", "a positive integer")
        if not isinstance(self.top_p, (int, float)) or isinstance(self.top_p, bool) or not 0 < self.top_p <= 1:
            fail("top_p", "a number in (0, 1]")
        if not is_int(self.top_k) or self.top_k < 0:
            fail("top_k", "a non-negative integer (0: no top-k filter)")
        if not isinstance(self.temperature, (int, float)) or self.temperature <= 0:
            fail("temperature", "a positive number")
        if not isinstance(self.repetition_penalty, (int, float)) or self.repetition_penalty <= 0:
            fail("repetition_penalty", "a positive number (1.0: no penalty)")
        if not is_int(self.num_beams) or self.num_beams < 1:
            fail("num_beams", "a positive integer")
        if self.num_beams > 1 and self.do_sample:
            fail("do_sample", "False with num_beams > 1 (beam sampling is not supported)")
        if not isinstance(self.transposed_weights, bool):
            fail("transposed_weights", "True or False")
        if not is_int(self.length_bucket) or self.length_bucket < 1:
            fail("length_bucket", "a positive integer")
        if not is_int(self.prefill_chunk_tokens) or self.prefill_chunk_tokens < 1:
            fail("prefill_chunk_tokens", "a positive integer")
        if self.seed is not None and not is_int(self.seed):
            fail("seed", "an integer or None")
        if any(not is_int(i) or i < 0 for i in self.eos_ids):
            fail("eos_token_id", "a token id or a list of token ids")
        if any(not isinstance(s, str) or not s for s in self.stop_list):
            fail("stop_strings", "a non-empty string or a list of them")
