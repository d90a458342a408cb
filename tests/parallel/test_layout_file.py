"""The layout (strategy) file beside checkpoints, and the load check against another strategy."""
import json

import mindspore as ms
import numpy as np
import pytest

from mindformers.models.llama import LlamaConfig, LlamaForCausalLM
from mindformers.parallel import ParallelSettings
from mindformers.parallel.layout_file import (LAYOUT_FILE, check_checkpoint_strategy, layout_record,
                                              read_layout_file, write_layout_file)
from mindformers.tools.errors import ConfigError


@pytest.fixture(scope="module")
def tiny_network():
    np.random.seed(0)
    return LlamaForCausalLM(LlamaConfig(seq_length=8, hidden_size=32, num_layers=1, num_heads=4, n_kv_heads=2,
                                        intermediate_size=64, vocab_size=64, compute_dtype="float32",
                                        param_init_type="float32"))


def saved_under(folder, network, settings):
    ckpt = folder / "llama_rank_0-1_2.ckpt"
    ckpt.write_bytes(b"")  # only its folder matters to the strategy check
    write_layout_file(str(folder), layout_record(network, settings, 0, settings.device_num))
    return str(ckpt)


def test_record_holds_every_weight_with_its_declared_split(tiny_network, tmp_path):
    path = write_layout_file(str(tmp_path), layout_record(tiny_network, ParallelSettings(data_parallel=2), 1, 2))
    record = read_layout_file(path)
    assert record["mesh"] == {"data_parallel": 2, "model_parallel": 1, "pipeline_stage": 1}
    params = record["parameters"]
    assert set(params) == {p.name for p in tiny_network.get_parameters()}
    assert params["model.layers.0.attention.wq.weight"]["split_dim"] == 0
    assert params["model.layers.0.attention.wo.weight"]["split_dim"] == 1
    assert params["model.layers.0.attention_norm.weight"]["split_dim"] is None
    assert params["lm_head.weight"]["shape"] == [64, 32]


def test_same_strategy_loads(tiny_network, tmp_path):
    ckpt = saved_under(tmp_path, tiny_network, ParallelSettings(data_parallel=2))
    assert check_checkpoint_strategy(ckpt, ParallelSettings(data_parallel=2))["data_parallel"] == 2


def test_other_strategy_needs_auto_trans_ckpt(tiny_network, tmp_path):
    ckpt = saved_under(tmp_path, tiny_network, ParallelSettings(data_parallel=2))
    with pytest.raises(ConfigError) as caught:
        check_checkpoint_strategy(ckpt, ParallelSettings(data_parallel=1))
    message = str(caught.value)
    assert "was saved under data_parallel=2" in message and "set auto_trans_ckpt True" in message
    # Whole (unsplit) weights are taken over as they are once the user asks for the transform.
    assert check_checkpoint_strategy(ckpt, ParallelSettings(), auto_trans_ckpt=True)


def test_resharding_model_parallel_is_refused_for_now(tiny_network, tmp_path):
    ckpt = saved_under(tmp_path, tiny_network, ParallelSettings(model_parallel=2))
    with pytest.raises(ConfigError, match="resharding model_parallel 2 -> 1 is not available yet"):
        check_checkpoint_strategy(ckpt, ParallelSettings(), auto_trans_ckpt=True)


def test_checkpoint_without_layout_file_is_not_checked(tmp_path):
    ckpt = tmp_path / "converted.ckpt"
    ckpt.write_bytes(b"")
    assert check_checkpoint_strategy(str(ckpt), ParallelSettings(data_parallel=4)) is None


def test_src_strategy_path_and_bad_file(tiny_network, tmp_path):
    saved_under(tmp_path, tiny_network, ParallelSettings(data_parallel=2))
    other = tmp_path / "elsewhere"
    other.mkdir()
    ckpt = other / "a.ckpt"
    ckpt.write_bytes(b"")
    with pytest.raises(ConfigError, match="saved under data_parallel=2"):
        check_checkpoint_strategy(str(ckpt), ParallelSettings(), src_strategy=str(tmp_path))
    (other / LAYOUT_FILE).write_text(json.dumps({"x": 1}))
    with pytest.raises(ConfigError, match="is not a layout file"):
        check_checkpoint_strategy(str(ckpt), ParallelSettings())
    assert ms is not None
