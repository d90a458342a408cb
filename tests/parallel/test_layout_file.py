"""The layout (strategy) file beside checkpoints, and the check made when a checkpoint loads as it is."""
import json

import pytest

from mindformers.parallel import ParallelSettings
from mindformers.parallel.layout_file import (LAYOUT_FILE, check_checkpoint_strategy, layout_record,
                                              read_layout_file, rank_layout, write_layout_file)
from mindformers.tools.errors import ConfigError
from tests.checkpoint.tiny_checkpoint import tiny_network


@pytest.fixture(scope="module")
def network():
    return tiny_network()


def saved_under(folder, network, settings, rank=0):
    ckpt = folder / f"llama_rank_{rank}-1_2.ckpt"
    ckpt.write_bytes(b"")  # only its folder matters to the strategy check
    write_layout_file(str(folder), layout_record(network, settings, rank))
    return str(ckpt)


def test_record_holds_every_weight_with_its_declared_split_and_stage(network, tmp_path):
    path = write_layout_file(str(tmp_path), layout_record(network, ParallelSettings(data_parallel=2,
                                                                                    pipeline_stage=2), 3))
    record = read_layout_file(path)
    assert record["mesh"] == {"data_parallel": 2, "model_parallel": 1, "pipeline_stage": 2}
    assert (record["rank"], record["stage"], record["world_size"]) == (3, 1, 4)
    params = record["parameters"]
    assert set(params) == {p.name for p in network.get_parameters()}
    assert params["model.layers.0.attention.wq.weight"]["split_dim"] == 0
    assert params["model.layers.0.attention.wo.weight"]["split_dim"] == 1
    assert params["model.layers.0.attention_norm.weight"]["split_dim"] is None
    assert params["lm_head.weight"] == {"shape": [64, 32], "dtype": "Float32", "split_dim": 0, "parts": 1,
                                        "stage": 1}
    assert [params[f"model.layers.{i}.ffn_norm.weight"]["stage"] for i in range(3)] == [0, 0, 1]
    assert params["model.tok_embeddings.embedding_weight"]["stage"] == 0


def test_a_model_parallel_rank_records_global_shapes(network):
    """A rank of an mp=2 run holds half of every split weight; the record holds the whole model's shapes."""
    rank_1 = tiny_network(model_parallel=2, model_rank=1)
    assert rank_1.lm_head.weight.shape == (32, 32)
    record = layout_record(rank_1, ParallelSettings(model_parallel=2), 1)
    whole = layout_record(network, ParallelSettings(), 0)
    for name, entry in record["parameters"].items():
        assert entry["shape"] == whole["parameters"][name]["shape"], name
        assert entry["parts"] == (2 if entry["split_dim"] is not None else 1), name
    piece = rank_layout(record, "strategy.json").weights["model.layers.0.feed_forward.w2.weight"]
    assert (piece.split_dim, piece.parts, piece.index, piece.local_shape) == (1, 2, 1, (32, 32))


def test_same_strategy_loads(network, tmp_path):
    ckpt = saved_under(tmp_path, network, ParallelSettings(data_parallel=2))
    assert check_checkpoint_strategy(ckpt, ParallelSettings(data_parallel=2), rank_id=1)["data_parallel"] == 2


def test_other_strategy_needs_auto_trans_ckpt(network, tmp_path):
    ckpt = saved_under(tmp_path, network, ParallelSettings(data_parallel=2))
    with pytest.raises(ConfigError) as caught:
        check_checkpoint_strategy(ckpt, ParallelSettings(data_parallel=1))
    message = str(caught.value)
    assert "was saved under data_parallel=2" in message and "set auto_trans_ckpt True" in message


def test_checkpoint_without_layout_file_is_not_checked(tmp_path):
    ckpt = tmp_path / "converted.ckpt"
    ckpt.write_bytes(b"")
    assert check_checkpoint_strategy(str(ckpt), ParallelSettings(data_parallel=4)) is None


def test_first_format_files_still_read(network, tmp_path):
    """strategy.json written before resharding existed (data parallelism only) reads as whole tensors, one stage."""
    record = layout_record(network, ParallelSettings(data_parallel=2), 1)
    for entry in record["parameters"].values():
        del entry["parts"], entry["stage"]
    del record["stage"]
    (tmp_path / LAYOUT_FILE).write_text(json.dumps(dict(record, format="mindformers-layout/1")))
    layout = rank_layout(read_layout_file(str(tmp_path / LAYOUT_FILE)), "old")
    assert all(piece.whole for piece in layout.weights.values()) and layout.stage == 0


def test_src_strategy_path_and_bad_file(network, tmp_path):
    saved_under(tmp_path, network, ParallelSettings(data_parallel=2))
    other = tmp_path / "elsewhere"
    other.mkdir()
    ckpt = other / "a.ckpt"
    ckpt.write_bytes(b"")
    with pytest.raises(ConfigError, match="saved under data_parallel=2"):
        check_checkpoint_strategy(str(ckpt), ParallelSettings(), src_strategy=str(tmp_path))
    (other / LAYOUT_FILE).write_text(json.dumps({"x": 1}))
    with pytest.raises(ConfigError, match="is not a layout file"):
        check_checkpoint_strategy(str(ckpt), ParallelSettings())
