"""model.model_config.pet_config: which parameter-efficient tuning to apply, checked into a small record.

    pet_config:                         pet_config:
      pet_type: lora                      pet_type: prefixtuning
      lora_rank: 8                        prefix_token_num: 16
      lora_alpha: 16                      mid_dim: 0          # > 0: prefixes come from a 2-layer projection
      lora_dropout: 0.05                  dropout_rate: 0.0
      target_modules: '.*wq|.*wv'        # default: the model's own (query and value projections)
Common keys: freeze_exclude (list of regexes over parameter names kept trainable besides the adapters,
e.g. ['.*lm_head.*']) and adapter_checkpoint (a checkpoint of adapter weights loaded over the base weights).
"""
import dataclasses
import difflib
import re
from typing import List, Optional

from mindformers.tools.errors import ConfigError

WHERE = "model.model_config.pet_config"


@dataclasses.dataclass
class LoraConfig:
    pet_type: str = "lora"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    target_modules: Optional[str] = None  # None: the model's default_lora_targets()
    freeze_exclude: List[str] = dataclasses.field(default_factory=list)
    adapter_checkpoint: Optional[str] = None

    @property
    def scaling(self):
        return self.lora_alpha / self.lora_rank


@dataclasses.dataclass
class PrefixTuningConfig:
    pet_type: str = "prefixtuning"
    prefix_token_num: int = 16
    mid_dim: int = 0
    dropout_rate: float = 0.0
    freeze_exclude: List[str] = dataclasses.field(default_factory=list)
    adapter_checkpoint: Optional[str] = None


KINDS = {"lora": LoraConfig, "prefixtuning": PrefixTuningConfig, "prefix_tuning": PrefixTuningConfig}


def _check_regex(pattern, key):
    try:
        return re.compile(pattern)
    except (re.error, TypeError) as error:
        raise ConfigError(f"{WHERE}.{key}: not a valid regular expression: {pattern!r} ({error})") from None


def parse_pet_config(values):
    """A LoraConfig / PrefixTuningConfig from the YAML mapping, or None when there is nothing to apply."""
    if values is None:
        return None
    if isinstance(values, (LoraConfig, PrefixTuningConfig)):
        return values
    values = dict(values)
    kind = str(values.get("pet_type", "")).lower()
    if kind not in KINDS:
        raise ConfigError(f"{WHERE}.pet_type: expected one of lora, prefixtuning, got {values.get('pet_type')!r}")
    values["pet_type"] = kind
    cls = KINDS[kind]
    fields = {field.name: field for field in dataclasses.fields(cls)}
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{WHERE}.{key}: unknown key for pet_type {kind}{hint} "
                              f"(expected one of: {', '.join(fields)})")
    config = cls(**values)
    positive = ("lora_rank",) if kind == "lora" else ("prefix_token_num",)
    for key in positive:
        if not isinstance(getattr(config, key), int) or getattr(config, key) < 1:
            raise ConfigError(f"{WHERE}.{key}: expected a positive integer, got {getattr(config, key)!r}")
    dropout_key = "lora_dropout" if kind == "lora" else "dropout_rate"
    if not 0.0 <= float(getattr(config, dropout_key)) < 1.0:
        raise ConfigError(f"{WHERE}.{dropout_key}: expected a probability in [0, 1), got {getattr(config, dropout_key)}")
    if kind == "lora":
        if config.target_modules is not None:
            _check_regex(config.target_modules, "target_modules")
    elif not isinstance(config.mid_dim, int) or config.mid_dim < 0:
        raise ConfigError(f"{WHERE}.mid_dim: expected an integer >= 0 (0: no projection), got {config.mid_dim!r}")
    if isinstance(config.freeze_exclude, str):
        config.freeze_exclude = [config.freeze_exclude]
    for pattern in config.freeze_exclude:
        _check_regex(pattern, "freeze_exclude")
    return config
