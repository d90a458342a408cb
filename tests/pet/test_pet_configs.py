"""The shipped fine-tuning configs load, their pet_config parses, and the tiny ones keep the pretraining shapes."""
import os

import pytest

from mindformers.pet import LoraConfig, PrefixTuningConfig, parse_pet_config
from mindformers.tools.register import MindFormerConfig
from tests.e2e.helpers import REPO

CONFIGS = {"finetune_llama2_tiny": None, "lora_llama2_tiny": LoraConfig, "finetune_llama2_7b": None,
           "lora_llama2_7b": LoraConfig, "lora_llama2_13b": LoraConfig,
           "finetune_llama2_7b_prefixtuning": PrefixTuningConfig}


def load(name):
    return MindFormerConfig(os.path.join(REPO, "configs", "llama2", f"{name}.yaml"))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_loads_with_its_pet_config(name):
    config = load(name)
    assert config.run_mode == "finetune"
    assert list(config.train_dataset.input_columns) == ["input_ids", "labels"]
    pet = parse_pet_config(config.model.model_config.get("pet_config"))
    assert (type(pet) if pet else None) is CONFIGS[name]


def test_tiny_finetune_configs_share_the_pretraining_parameters():
    import mindspore as ms
    from mindformers.trainer.causal_language_modeling import build_network
    ms.set_context(mode=ms.PYNATIVE_MODE)
    shapes = {}
    for name in ("pretrain_llama2_tiny", "finetune_llama2_tiny", "lora_llama2_tiny"):
        _, network = build_network(load(name))
        shapes[name] = {p.name: tuple(p.shape) for p in network.get_parameters()}
    assert shapes["finetune_llama2_tiny"] == shapes["pretrain_llama2_tiny"]
    lora = shapes["lora_llama2_tiny"]
    base = {n: s for n, s in lora.items() if not n.endswith((".lora_a", ".lora_b"))}
    assert base == shapes["pretrain_llama2_tiny"] and len(lora) - len(base) == 4 * 4 * 2
