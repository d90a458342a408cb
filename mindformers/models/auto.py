"""AutoModelForCausalLM.from_pretrained(path): the family's causal LM for a folder, whichever family it is.

A HF folder names its family by config.json's model_type (several of ours read model_type llama: the family named
llama is taken); a folder or checkpoint of ours by the arch type of the YAML beside it.
"""
import os

from mindformers.checkpoint.hf_convert import (is_hf_folder, load_our_yaml, our_config_path, read_hf_config)
from mindformers.checkpoint.hf_mapping import FAMILIES, load_builtin_families
from mindformers.models.modeling_utils import find_our_checkpoint
from mindformers.tools.errors import ConfigError
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister


def family_of_hf_type(model_type, where):
    load_builtin_families()
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    readers = [family for family in FAMILIES.values() if model_type in family.model_types]
    if not readers:
        known = sorted({t for family in FAMILIES.values() for t in family.model_types})
        raise ConfigError(f"{where}: model_type {model_type!r} is not one this project reads (expected one of "
                          f"{', '.join(known)})")
    return readers[0]


def arch_class_of(path):
    """The registered causal LM class that reads `path`."""
    if os.path.isdir(path) and is_hf_folder(path):
        where = os.path.join(path, "config.json")
        arch = family_of_hf_type(read_hf_config(path).get("model_type"), where).our_arch_type
    else:
        config_path = find_our_checkpoint(path)[1] if os.path.isdir(path) else our_config_path(path)
        if not os.path.isfile(config_path):
            raise ConfigError(f"from_pretrained: no model config beside {path} (expected {config_path})")
        _, _, arch = load_our_yaml(config_path)
        where = config_path
    return MindFormerRegister.get_cls(MindFormerModuleType.MODELS, arch, where=f"{where}: model.arch")


class AutoModelForCausalLM:
    @staticmethod
    def from_pretrained(path, **config_overrides):
        path = os.path.expanduser(str(path))
        if not os.path.exists(path):
            raise ConfigError(f"from_pretrained: not found: {path}")
        return arch_class_of(path).from_pretrained(path, **config_overrides)
