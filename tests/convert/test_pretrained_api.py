"""save_pretrained / from_pretrained on both folder kinds, without transformers in the loop."""
import numpy as np
import mindspore as ms
import pytest

from mindformers import LlamaConfig, LlamaForCausalLM
from mindformers.tools.errors import ConfigError


@pytest.fixture(scope="module")
def tiny_model():
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    config = LlamaConfig(seq_length=16, hidden_size=32, num_layers=2, num_heads=4, n_kv_heads=2, vocab_size=64,
                         intermediate_size=48, compute_dtype="float32", theta=500000.0)
    return LlamaForCausalLM(config)


def logits(model, ids):
    return model(ms.Tensor(ids, ms.int32)).asnumpy()


def test_save_pretrained_both_formats_reload_identically(tiny_model, tmp_path):
    ids = np.arange(20).reshape(2, 10) % 64
    expected = logits(tiny_model.set_train(False), ids)
    tiny_model.save_pretrained(tmp_path / "ours")
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == ["mindspore_model.ckpt",
                                                                          "mindspore_model.ckpt.sha256",
                                                                          "mindspore_model.yaml"]
    tiny_model.save_pretrained(tmp_path / "hf", hf_format=True, max_shard_size=10_000)
    assert (tmp_path / "hf" / "config.json").is_file()
    for source in (tmp_path / "ours", tmp_path / "ours" / "mindspore_model.ckpt", tmp_path / "hf"):
        reloaded = LlamaForCausalLM.from_pretrained(source)
        assert not reloaded.training and reloaded.config.kv_heads == 2 and reloaded.config.theta == 500000.0
        np.testing.assert_array_equal(logits(reloaded, ids), expected)


def test_from_pretrained_overrides_and_errors(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "ours")
    assert LlamaForCausalLM.from_pretrained(tmp_path / "ours", seq_length=8).config.seq_length == 8
    with pytest.raises(ConfigError, match="not found"):
        LlamaForCausalLM.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="exactly one checkpoint"):
        LlamaForCausalLM.from_pretrained(tmp_path / "empty")
