"""README's "Adding a family" example, run as written: the module goes into a research-style folder, convert_weight.py
--register_path converts a HF checkpoint with it, and the family's model computes what transformers does."""
import importlib
import os
import re

import pytest

pytest.importorskip("transformers")
import mindspore as ms  # noqa: E402

import convert_weight  # noqa: E402
from tests.e2e.helpers import REPO  # noqa: E402
from tests.fixtures.hf_models import HEADS, HIDDEN, FFN, LAYERS, MAX_POS, VOCAB  # noqa: E402
from tests.models.test_hf_parity import assert_logits_match  # noqa: E402


def readme_example():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as stream:
        text = stream.read()
    section = text[text.index("### Adding a family"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_family_example_converts_and_matches_transformers(tmp_path):
    import torch  # pylint: disable=import-outside-toplevel
    import transformers  # pylint: disable=import-outside-toplevel
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    folder = tmp_path / "mylm"
    folder.mkdir()
    (folder / "__init__.py").write_text(readme_example(), encoding="utf-8")
    torch.manual_seed(0)
    hf_model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=2, max_position_embeddings=MAX_POS, rope_theta=500000.0,
        attention_bias=True, attn_implementation="eager")).eval()
    with torch.no_grad():
        for name, param in hf_model.named_parameters():
            if name.endswith(".bias"):
                param.uniform_(-0.5, 0.5)
    hf_model.save_pretrained(tmp_path / "hf")
    assert convert_weight.main(["--no_progress", "--register_path", str(folder), "--model", "mylm", "--input_path",
                                str(tmp_path / "hf"), "--output_path", str(tmp_path / "ours" / "mylm.ckpt")]) == 0
    assert "type: MyLMConfig" in (tmp_path / "ours" / "mylm.yaml").read_text()
    ours = importlib.import_module("mylm").MyLMForCausalLM.from_pretrained(tmp_path / "ours")
    assert ours.config.qkv_has_bias and ours.config.attn_proj_has_bias and ours.config.kv_heads == 2
    assert_logits_match(ours, hf_model)
