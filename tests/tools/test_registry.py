import pytest

from mindformers.tools.errors import ConfigError
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister, build_from_config


@MindFormerRegister.register(MindFormerModuleType.TOOLS)
class RegistryProbe:
    def __init__(self, size, name="probe"):
        self.size = size
        self.name = name


def test_build_by_type_with_defaults():
    probe = build_from_config({"type": "RegistryProbe", "size": 3}, MindFormerModuleType.TOOLS,
                              default_args={"name": "given"})
    assert (probe.size, probe.name) == (3, "given")


def test_config_value_wins_over_default_args():
    probe = build_from_config({"type": "RegistryProbe", "size": 3, "name": "mine"}, "tools",
                              default_args={"name": "given"})
    assert probe.name == "mine"


def test_unknown_type_lists_names_and_closest_match():
    with pytest.raises(ConfigError) as info:
        build_from_config({"type": "RegistryProbes"}, "tools", where="tool")
    message = str(info.value)
    assert "tool.type" in message and "did you mean 'RegistryProbe'" in message and "registered:" in message


def test_unknown_argument_names_key_path():
    with pytest.raises(ConfigError, match=r"optimizer\.sise: unknown key for RegistryProbe; did you mean 'size'"):
        build_from_config({"type": "RegistryProbe", "sise": 1}, "tools", where="optimizer")


def test_every_module_kind_exists():
    kinds = {kind.value for kind in MindFormerModuleType}
    for needed in ("models", "config", "tokenizer", "processor", "dataset", "dataset_loader", "transforms",
                   "optimizer", "lr", "wrapper", "callback", "metric", "loss", "trainer", "pipeline", "tools"):
        assert needed in kinds


def test_core_classes_are_registered():
    import mindformers  # noqa: F401
    assert MindFormerRegister.is_exist("models", "LlamaForCausalLM")
    assert MindFormerRegister.is_exist("config", "LlamaConfig")
    assert MindFormerRegister.is_exist("optimizer", "AdamW")
    assert MindFormerRegister.is_exist("lr", "CosineWithWarmUpLR")
    assert MindFormerRegister.is_exist("wrapper", "MFTrainOneStepCell")
    assert MindFormerRegister.is_exist("callback", "CheckpointMonitor")
    assert MindFormerRegister.is_exist("trainer", "CausalLanguageModelingTrainer")
