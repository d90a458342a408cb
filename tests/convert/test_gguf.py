"""llama.cpp GGUF in: dequantization against gguf's reference, the q/k permutation and logits against transformers'
own GGUF loading, the tokenizer built from the metadata, and OUT.yaml as a base_config."""
import json
import os

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from mindformers.checkpoint.gguf_file import GGUFModel  # noqa: E402
from mindformers.checkpoint.gguf_quants import BLOCK, dequantize  # noqa: E402
from mindformers.tools.errors import ConfigError  # noqa: E402
from tests.fixtures.gguf_files import tiny_gguf  # noqa: E402,F401  pylint: disable=unused-import

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCALE_OFFSETS = {"Q8_0": (0,), "Q4_0": (0,), "Q4_1": (0, 2), "Q4_K": (0, 2), "Q6_K": (208,)}


def random_blocks(kind, rows, blocks_per_row, rng):
    """Random quantized rows whose fp16 scale fields hold finite values (every other byte is fair game)."""
    _, nbytes = BLOCK[kind]
    raw = rng.integers(0, 256, size=(rows * blocks_per_row, nbytes), dtype=np.uint8)
    for offset in SCALE_OFFSETS[kind]:
        halves = rng.uniform(-2, 2, raw.shape[0]).astype(np.float16)
        raw[:, offset:offset + 2] = halves.view(np.uint8).reshape(-1, 2)
    return raw.reshape(rows, -1)


@pytest.mark.parametrize("kind", sorted(BLOCK))
def test_quantized_blocks_match_gguf_reference(kind):
    raw = random_blocks(kind, 3, 4, np.random.default_rng(sorted(BLOCK).index(kind)))
    expected = gguf.quants.dequantize(raw, getattr(gguf.GGMLQuantizationType, kind))
    np.testing.assert_array_equal(dequantize(raw, kind, expected.shape), expected)


@pytest.mark.parametrize("kind", ["F16", "BF16"])
def test_half_types_match_gguf_reference(kind):
    values = np.random.default_rng(1).normal(size=(4, 64)).astype(np.float32)
    stored = gguf.quants.quantize(values, getattr(gguf.GGMLQuantizationType, kind))
    expected = gguf.quants.dequantize(stored, getattr(gguf.GGMLQuantizationType, kind))
    np.testing.assert_array_equal(dequantize(stored, kind, values.shape), expected)


def transformers_from_gguf(path):
    import torch  # pylint: disable=import-outside-toplevel
    import transformers  # pylint: disable=import-outside-toplevel
    return transformers.AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                             dtype=torch.float32, attn_implementation="eager").eval()


def test_tensors_and_logits_equal_transformers_loading_the_same_file(tiny_gguf):
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    import torch  # pylint: disable=import-outside-toplevel
    from mindformers import LlamaForCausalLM  # pylint: disable=import-outside-toplevel
    path, original = tiny_gguf
    reference = transformers_from_gguf(path)
    state = {name: tensor.numpy() for name, tensor in reference.state_dict().items()}
    ours = GGUFModel(path).tensors
    assert set(ours) == set(state)
    for name, info in ours.items():
        np.testing.assert_array_equal(info.read(), state[name], err_msg=name)
    # The permutation is undone: q/k rows are the original model's (up to 4-bit quantization error), not shuffled.
    q_name = "model.layers.0.self_attn.q_proj.weight"
    wanted = original.state_dict()[q_name].numpy()
    stored = next(t for t in GGUFModel(path).reader.tensors if t.name == "blk.0.attn_q.weight")
    as_stored = dequantize(stored.data, stored.tensor_type.name, wanted.shape)
    assert np.abs(ours[q_name].read() - wanted).max() < 0.02 < np.abs(as_stored - wanted).max()
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    model = LlamaForCausalLM.from_pretrained(path)
    ids = np.array([[5, 17, 40, 99, 3, 250, 12]])
    with torch.no_grad():
        expected = reference(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(model(ms.Tensor(ids, ms.int32)).asnumpy(), expected, atol=1e-5, rtol=0)


def test_convert_weight_writes_checkpoint_yaml_and_tokenizer(tiny_gguf, tmp_path):
    import transformers  # pylint: disable=import-outside-toplevel
    import convert_weight  # pylint: disable=import-outside-toplevel
    from mindformers.models.llama.llama_tokenizer_fast import LlamaTokenizerFast  # noqa: E501 pylint: disable=import-outside-toplevel
    from mindformers.tools.register import MindFormerConfig  # pylint: disable=import-outside-toplevel
    path, _ = tiny_gguf
    out = tmp_path / "tiny.ckpt"
    assert convert_weight.main(["--model", "llama", "--input_path", path, "--output_path", str(out),
                                "--no_progress"]) == 0
    folder = tmp_path / "tiny_tokenizer"
    assert sorted(p.name for p in folder.iterdir()) == ["special_tokens_map.json", "tokenizer.json",
                                                       "tokenizer_config.json"]
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert tokenizer_config["chat_template"].startswith("{% for message in messages %}")
    assert (tokenizer_config["bos_token"], tokenizer_config["eos_token"]) == ("<|im_start|>", "<|im_end|>")
    # As a base_config AFTER a Llama 3 base (ids 128000/128001, vocab 128256), the converted model still wins
    # on every id and size, including those equal to LlamaConfig's defaults.
    user = tmp_path / "user.yaml"
    user.write_text(f"base_config: ['{REPO}/configs/llama3/model/llama3_8b.yaml', '{out.with_suffix('.yaml')}']\n",
                    encoding="utf-8")
    model_config = MindFormerConfig(str(user)).model.model_config
    reader = GGUFModel(path)
    assert (model_config.bos_token_id, model_config.eos_token_id, model_config.pad_token_id) == (
        reader.hf_config["bos_token_id"], reader.hf_config["eos_token_id"], reader.hf_config["pad_token_id"])
    assert (model_config.vocab_size, model_config.n_kv_heads, model_config.theta) == (
        reader.hf_config["vocab_size"], 2, reader.hf_config["rope_theta"])
    # Our tokenizer reads the written files as transformers reads the GGUF itself.
    ours = LlamaTokenizerFast(**{k: v for k, v in MindFormerConfig(str(user)).processor.tokenizer.items()
                                 if k != "type"})
    theirs = transformers.AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    text = "The for statement iterates over the items of any sequence, in the order they appear."
    assert ours.encode(text) == theirs.encode(text)
    assert ours.decode(ours.encode(text)) == text
    assert ours.encode("<|im_start|>user")[0] == reader.hf_config["bos_token_id"]


def test_unsupported_architecture_is_one_line(tmp_path):
    writer = gguf.GGUFWriter(str(tmp_path / "other.gguf"), "gemma")
    writer.add_block_count(1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ConfigError, match="general.architecture is 'gemma'"):
        GGUFModel(str(tmp_path / "other.gguf"))


def test_load_checkpoint_takes_a_gguf_file_or_hf_folder_directly(tiny_gguf, tmp_path):
    """--load_checkpoint model.gguf (or a HF folder) converts while loading; a PET model gets its base weights so."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    import torch  # pylint: disable=import-outside-toplevel
    from mindformers import LlamaForCausalLM  # pylint: disable=import-outside-toplevel
    from mindformers.parallel import ParallelSettings  # pylint: disable=import-outside-toplevel
    from mindformers.pet import apply_pet  # pylint: disable=import-outside-toplevel
    from mindformers.tools.register import MindFormerConfig  # pylint: disable=import-outside-toplevel
    from mindformers.trainer.checkpoint_loading import load_checkpoint_for  # pylint: disable=import-outside-toplevel
    import transformers  # pylint: disable=import-outside-toplevel
    path, original = tiny_gguf
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    reference = transformers_from_gguf(path)
    plain = transformers.LlamaForCausalLM(original.config)  # the dequantized weights, as an ordinary HF folder
    plain.load_state_dict(reference.state_dict())
    plain.save_pretrained(tmp_path / "hf")
    ids = np.array([[7, 3, 99, 41, 250]])
    with torch.no_grad():
        expected = reference(torch.tensor(ids)).logits.numpy()
    config = LlamaForCausalLM.from_pretrained(path).config
    for source, pet in ((path, None), (str(tmp_path / "hf"), {"pet_type": "lora", "lora_rank": 4})):
        network = LlamaForCausalLM(config)
        if pet:
            network = apply_pet(network, pet)  # LoRA's B starts at zero: the base model's logits
        load_checkpoint_for(network, MindFormerConfig(load_checkpoint=source), ParallelSettings())
        network.set_train(False)
        np.testing.assert_allclose(network(ms.Tensor(ids, ms.int32)).asnumpy(), expected, atol=1e-5, rtol=0)
    other = LlamaForCausalLM(type(config)(**dict(config.to_dict(), hidden_size=32, intermediate_size=64)))
    with pytest.raises(ConfigError, match="expected"):
        load_checkpoint_for(other, MindFormerConfig(load_checkpoint=path), ParallelSettings())
