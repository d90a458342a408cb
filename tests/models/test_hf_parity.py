"""Our Llama / Mistral logits equal transformers' on random tiny models (fp32, pynative), with and without padding."""
import inspect

import numpy as np
import pytest

pytest.importorskip("transformers")
import mindspore as ms  # noqa: E402
import torch  # noqa: E402

from mindformers import LlamaForCausalLM  # noqa: E402
from tests.e2e.helpers import run_cli  # noqa: E402
from tests.fixtures.hf_models import KINDS, VOCAB, hf_folders, load_hf, register_mistral  # noqa: E402,F401

SEQ = 12  # longer than Mistral's window of 4


def model_class(kind):
    return register_mistral().MistralForCausalLM if kind == "mistral" else LlamaForCausalLM


def inputs():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, size=(2, SEQ))
    mask = np.ones((2, SEQ), np.int64)
    mask[1, :3] = 0  # left padding on the second row
    return ids, mask


def assert_logits_match(ours, hf_model):
    """Ours against transformers' on rows with and without left padding. A padded row's positions count from its
    first real token, as in generation (ours, and transformers' generate, which passes such position_ids)."""
    ids, mask = inputs()
    takes_positions = "position_ids" in inspect.signature(hf_model.forward).parameters
    for attention_mask in (None, mask):
        options = {}
        if attention_mask is not None:
            options["attention_mask"] = torch.tensor(attention_mask)
            if takes_positions:
                options["position_ids"] = torch.tensor(np.maximum(attention_mask.cumsum(1) - 1, 0))
        with torch.no_grad():
            expected = hf_model(torch.tensor(ids), **options).logits.numpy()
        got = ours(ms.Tensor(ids, ms.int32), attention_mask=None if attention_mask is None
                   else ms.Tensor(attention_mask, ms.int32))
        got = (got[0] if isinstance(got, tuple) else got).asnumpy()
        assert got.shape == (2, SEQ, VOCAB) and got.dtype == np.float32
        real = np.ones(ids.shape, bool) if attention_mask is None else attention_mask.astype(bool)
        np.testing.assert_allclose(got[real], expected[real], atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_from_pretrained_hf_folder_matches_transformers(kind, hf_folders):  # noqa: F811
    ours = model_class(kind).from_pretrained(hf_folders[kind])
    assert not ours.training
    if kind == "tied":
        assert "lm_head.weight" not in {p.name for p in ours.get_parameters()}
    if kind == "mistral":
        assert ours.config.sliding_window == 4
    assert_logits_match(ours, load_hf(hf_folders[kind]))


def test_cli_converted_checkpoint_matches_transformers(hf_folders, tmp_path):  # noqa: F811
    """The real CLI in a subprocess, then from_pretrained on the folder it wrote (checkpoint + YAML)."""
    out = tmp_path / "ours" / "llama3_tiny.ckpt"
    result = run_cli(["convert_weight.py", "--model", "llama3", "--input_path", hf_folders["gqa"],
                      "--output_path", out])
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.is_file() and (tmp_path / "ours" / "llama3_tiny.yaml").is_file()
    ours = LlamaForCausalLM.from_pretrained(tmp_path / "ours")
    assert ours.config.theta == 500000.0 and ours.config.kv_heads == 2
    assert_logits_match(ours, load_hf(hf_folders["gqa"]))
