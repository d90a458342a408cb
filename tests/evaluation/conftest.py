"""The tiny Llama and tokenizer the benchmark tests run on, and the benchmark folders."""
import numpy as np
import pytest

from tests.fixtures.benchmark_data import (BENCHMARK_VOCAB_SIZE, benchmark_folders,  # noqa: F401
                                           benchmark_tokenizer_file)

TINY = dict(seq_length=512, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
            vocab_size=BENCHMARK_VOCAB_SIZE)


@pytest.fixture(autouse=True, scope="package")
def pynative():
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")


@pytest.fixture(scope="package")
def tokenizer(benchmark_tokenizer_file):  # noqa: F811
    from mindformers.models.llama.llama_tokenizer import LlamaTokenizer  # pylint: disable=import-outside-toplevel
    return LlamaTokenizer(vocab_file=benchmark_tokenizer_file)


@pytest.fixture(scope="package")
def tiny_model():
    """A random tiny Llama; initializer_range 0.3 gives logits far from uniform, so choices are not near ties."""
    from mindformers import LlamaConfig, LlamaForCausalLM  # pylint: disable=import-outside-toplevel
    np.random.seed(11)
    return LlamaForCausalLM(LlamaConfig(compute_dtype="float32", initializer_range=0.3, **TINY))
