import os
import textwrap

import pytest

from mindformers.tools.errors import ConfigError
from mindformers.tools.register import MindFormerConfig

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(textwrap.dedent(text))
    return str(path)


def test_base_config_chain_relative_paths_and_override_order(tmp_path):
    write(tmp_path / "common" / "root.yaml", """
        seed: 1
        runner_config: {epochs: 1, batch_size: 2}
        callbacks: [{type: MFLossMonitor}]
    """)
    write(tmp_path / "common" / "middle.yaml", """
        base_config: ['root.yaml']
        runner_config: {epochs: 5}
    """)
    write(tmp_path / "other.yaml", "seed: 7\n")
    top = write(tmp_path / "user" / "run.yaml", f"""
        base_config: ['../common/middle.yaml', '{tmp_path / "other.yaml"}']
        runner_config: {{batch_size: 8}}
    """)
    config = MindFormerConfig(top)
    assert config.seed == 7  # the later base overrides the earlier one
    assert config.runner_config.epochs == 5 and config.runner_config.batch_size == 8
    assert config.callbacks[0].type == "MFLossMonitor"
    assert "base_config" not in config


def test_single_string_base_config(tmp_path):
    write(tmp_path / "a.yaml", "seed: 3\n")
    config = MindFormerConfig(write(tmp_path / "b.yaml", "base_config: a.yaml\n"))
    assert config.seed == 3


def test_cycle_is_detected(tmp_path):
    write(tmp_path / "a.yaml", "base_config: ['b.yaml']\n")
    write(tmp_path / "b.yaml", "base_config: ['a.yaml']\n")
    with pytest.raises(ConfigError, match="base_config cycle"):
        MindFormerConfig(str(tmp_path / "a.yaml"))


def test_missing_base_names_the_naming_file(tmp_path):
    top = write(tmp_path / "a.yaml", "base_config: ['nope.yaml']\n")
    with pytest.raises(ConfigError) as info:
        MindFormerConfig(top)
    assert str(info.value).startswith(f"{top}: base_config[0]: config file not found")


def test_wrong_type_names_file_and_key_path(tmp_path):
    bad = write(tmp_path / "bad.yaml", "runner_config: {epochs: two}\n")
    with pytest.raises(ConfigError) as info:
        MindFormerConfig(write(tmp_path / "top.yaml", "base_config: ['bad.yaml']\n"))
    assert str(info.value) == f"{bad}: runner_config.epochs: expected an integer >= 1, got 'two'"


def test_unknown_key_in_known_section(tmp_path):
    top = write(tmp_path / "top.yaml", "parallel_config: {data_paralel: 2}\n")
    with pytest.raises(ConfigError, match=r"parallel_config\.data_paralel: unknown key; did you mean 'data_parallel'"):
        MindFormerConfig(top)


def test_invalid_yaml_is_one_line(tmp_path):
    top = write(tmp_path / "top.yaml", "seed: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        MindFormerConfig(top)
    assert "not valid YAML" in str(info.value) and "\n" not in str(info.value)


def test_attribute_access_and_merge_from_dict():
    config = MindFormerConfig({"runner_config": {"epochs": 1}})
    config.merge_from_dict({"runner_config.batch_size": 4, "train_dataset.data_loader.dataset_dir": "/d"})
    assert config.runner_config.batch_size == 4
    assert config.train_dataset.data_loader.dataset_dir == "/d"
    assert config.missing_key is None


@pytest.mark.parametrize("path", [
    "configs/llama2/pretrain_llama2_7b.yaml", "configs/llama2/pretrain_llama2_13b.yaml",
    "configs/llama2/pretrain_llama2_70b.yaml", "configs/llama3/pretrain_llama3_8b.yaml",
    "configs/llama3/pretrain_llama3_70b.yaml"])
def test_published_architectures(path):
    from mindformers.models.llama import LlamaConfig
    config = MindFormerConfig(os.path.join(REPO, path))
    values = dict(config.model.model_config)
    values.pop("type")
    llama = LlamaConfig(**values)
    expected = {
        "pretrain_llama2_7b": (4096, 32, 32, 32, 11008, 32000, 10000.0),
        "pretrain_llama2_13b": (5120, 40, 40, 40, 13824, 32000, 10000.0),
        "pretrain_llama2_70b": (8192, 80, 64, 8, 28672, 32000, 10000.0),
        "pretrain_llama3_8b": (4096, 32, 32, 8, 14336, 128256, 500000.0),
        "pretrain_llama3_70b": (8192, 80, 64, 8, 28672, 128256, 500000.0),
    }[os.path.basename(path)[:-5]]
    assert (llama.hidden_size, llama.num_layers, llama.num_heads, llama.kv_heads, llama.ffn_size,
            llama.vocab_size, llama.theta) == expected


def test_a_later_file_may_swap_a_mapping_for_a_list(tmp_path):
    """`metric: [...]` over a shipped `metric: {type: ...}` (and back, and a list over a value): the later value
    replaces the earlier whole, while mappings on both sides still merge key by key."""
    write(tmp_path / "base.yaml", """
        metric: {type: PerplexityMetric}
        predict_data: 'one prompt'
        runner_config: {epochs: 1, batch_size: 2}
    """)
    listed = write(tmp_path / "listed.yaml", """
        base_config: ['base.yaml']
        metric: [{type: PerplexityMetric}, {type: EmF1Metric}]
        predict_data: ['a', 'b']
        runner_config: {epochs: 3}
    """)
    config = MindFormerConfig(listed)
    assert config.metric == [{"type": "PerplexityMetric"}, {"type": "EmF1Metric"}]
    assert config.predict_data == ["a", "b"]
    assert config.runner_config == {"epochs": 3, "batch_size": 2}
    back = write(tmp_path / "back.yaml", """
        base_config: ['listed.yaml']
        metric: {type: EmF1Metric}
    """)
    assert MindFormerConfig(back).metric == {"type": "EmF1Metric"}
