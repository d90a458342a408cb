"""generate(): KV cache vs no cache, transformers parity (greedy, beam search, repetition penalty), batching,
seeded sampling, defaults from the model config and clear errors for bad options. PyNative and graph mode, tiny
models."""
import numpy as np
import pytest

pytest.importorskip("transformers")
import mindspore as ms  # noqa: E402
import torch  # noqa: E402

from mindformers import ConfigError, LlamaConfig, LlamaForCausalLM  # noqa: E402
from tests.fixtures.hf_models import hf_folders, load_hf, register_mistral  # noqa: E402,F401

PROMPTS = [[5, 6, 7, 8, 9, 1], [10, 11, 12]]  # different lengths: the batch is left padded
NEW = 12


@pytest.fixture(autouse=True, scope="module", params=[ms.PYNATIVE_MODE, ms.GRAPH_MODE], ids=["pynative", "graph"])
def mode(request):
    """Every test in both modes: graph mode compiles the decoding step once per shape, pynative runs it op by op."""
    ms.set_context(mode=request.param, device_target="CPU")
    yield request.param
    ms.set_context(mode=ms.PYNATIVE_MODE)


@pytest.fixture(scope="module")
def models(hf_folders):  # noqa: F811
    """Ours with use_past on by default (as predict YAMLs set it), and transformers', on the same weights."""
    return {kind: (LlamaForCausalLM.from_pretrained(hf_folders[kind], use_past=True), load_hf(hf_folders[kind]))
            for kind in ("mha", "gqa")}


def hf_generate(hf_model, prompt, **options):
    with torch.no_grad():
        out = hf_model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                max_new_tokens=NEW, do_sample=False, pad_token_id=0, **options)
    return out[0].tolist()


def assert_same_as_hf(ours, hf_model, **options):
    """Our batched, left-padded result for each prompt equals transformers' for that prompt alone (whose
    finished sequences are padded with pad_token_id 0 up to the longest)."""
    got = ours.generate(PROMPTS, max_new_tokens=NEW, **options)
    for prompt, row in zip(PROMPTS, got):
        expected = hf_generate(hf_model, prompt, **options)
        assert row == expected[:len(row)] and all(t == 0 for t in expected[len(row):]), (row, expected)
    return got


@pytest.mark.parametrize("kind", ["mha", "gqa"])
def test_greedy_with_and_without_cache_equals_transformers(models, kind):
    ours, hf_model = models[kind]
    cached = assert_same_as_hf(ours, hf_model, eos_token_id=2)
    assert ours.generate(PROMPTS, max_new_tokens=NEW, eos_token_id=2, use_past=False) == cached
    assert [ours.generate([p], max_new_tokens=NEW, eos_token_id=2)[0] for p in PROMPTS] == cached
    # prompts run in chunks of 2 columns (4 tokens over the batch of 2), each chunk attending over the cache
    assert ours.generate(PROMPTS, max_new_tokens=NEW, eos_token_id=2, prefill_chunk_tokens=4) == cached


def test_mistral_sliding_window_equals_transformers(hf_folders):  # noqa: F811
    """Prompts and continuations longer than the window of 4: the cache masks keys that slid out of it."""
    ours = register_mistral().MistralForCausalLM.from_pretrained(hf_folders["mistral"], use_past=True)
    assert ours.config.sliding_window == 4
    cached = assert_same_as_hf(ours, load_hf(hf_folders["mistral"]), eos_token_id=2)
    assert ours.generate(PROMPTS, max_new_tokens=NEW, eos_token_id=2, use_past=False) == cached


@pytest.mark.parametrize("kind,eos", [("mha", 2), ("gqa", 45)])  # gqa: eos 45 ends beams early
def test_beam_search_equals_transformers(models, kind, eos):
    ours, hf_model = models[kind]
    got = assert_same_as_hf(ours, hf_model, num_beams=4, eos_token_id=eos)
    assert ours.generate(PROMPTS, max_new_tokens=NEW, num_beams=4, eos_token_id=eos, use_past=False) == got


def test_eos_ends_each_row_on_its_own(models):
    ours, hf_model = models["mha"]
    got = assert_same_as_hf(ours, hf_model, eos_token_id=62)  # the second prompt's third new token
    assert got[1][-1] == 62 and len(got[1]) == len(PROMPTS[1]) + 3 and len(got[0]) == len(PROMPTS[0]) + NEW


def test_repetition_penalty_equals_transformers(models):
    ours, hf_model = models["gqa"]
    assert_same_as_hf(ours, hf_model, eos_token_id=2, repetition_penalty=1.3)
    assert_same_as_hf(ours, hf_model, eos_token_id=2, repetition_penalty=1.3, num_beams=4)


def test_seeded_sampling_is_reproducible_and_top_k_1_is_greedy(models):
    ours, _ = models["gqa"]
    sample = dict(max_new_tokens=NEW, do_sample=True, eos_token_id=[], temperature=1.5, top_p=0.95)
    first = ours.generate(PROMPTS, seed=7, **sample)
    assert ours.generate(PROMPTS, seed=7, **sample) == first
    assert ours.generate(PROMPTS, seed=8, **sample) != first
    greedy = ours.generate(PROMPTS, max_new_tokens=NEW, eos_token_id=[])
    assert ours.generate(PROMPTS, max_new_tokens=NEW, eos_token_id=[], do_sample=True, top_k=1, seed=1) == greedy


def test_defaults_come_from_the_model_config():
    np.random.seed(0)
    config = LlamaConfig(seq_length=24, hidden_size=32, num_layers=1, num_heads=4, vocab_size=64,
                         intermediate_size=64, compute_dtype="float32", max_decode_length=10, eos_token_id=63)
    model = LlamaForCausalLM(config)
    assert [len(r) for r in model.generate([[1, 2, 3], [4]])] in ([10, 10], )  # up to max_decode_length
    config.max_new_tokens = 4
    assert [len(r) for r in model.generate([[1, 2, 3], [4]])] == [7, 5]
    config.max_new_tokens = None
    config.max_decode_length = 100  # capped by seq_length
    assert [len(r) for r in model.generate([[1, 2, 3]], eos_token_id=[])] == [24]


class CharTokenizer:
    """Token i is the character chr(ord('a') + i % 26): enough to test stop strings and streamers."""

    @staticmethod
    def decode(ids, skip_special_tokens=False):
        return "".join(chr(ord("a") + int(i) % 26) for i in ids)


def test_stop_strings_end_a_row(models):
    ours, _ = models["mha"]
    full = ours.generate([PROMPTS[0]], max_new_tokens=NEW, eos_token_id=[])[0]
    text = CharTokenizer.decode(full[len(PROMPTS[0]):])
    stop = text[3:5]
    got = ours.generate([PROMPTS[0]], max_new_tokens=NEW, eos_token_id=[], stop_strings=stop,
                        tokenizer=CharTokenizer())[0]
    assert CharTokenizer.decode(got[len(PROMPTS[0]):]) == text[:text.index(stop) + len(stop)]


@pytest.mark.parametrize("options,fragment", [
    (dict(top_p=0.0), "top_p: expected a number in (0, 1]"),
    (dict(top_p=1.5), "top_p: expected a number in (0, 1]"),
    (dict(num_beams=0), "num_beams: expected a positive integer"),
    (dict(temperature=0), "temperature"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(num_beams=2, do_sample=True), "beam sampling"),
    (dict(bogus=1), "unknown option 'bogus'"),
    (dict(stop_strings="x"), "pass tokenizer="),
])
def test_bad_options_are_clear_errors(models, options, fragment):
    ours, _ = models["mha"]
    with pytest.raises(ConfigError, match="^generate: ") as error:
        ours.generate(PROMPTS, **{"max_new_tokens": 2, **options})
    assert fragment in str(error.value)


def test_prompt_longer_than_seq_length_is_an_error(models):
    ours, _ = models["mha"]
    with pytest.raises(ConfigError, match="prompt of 40 tokens is too long for seq_length 32"):
        ours.generate([list(range(40))], max_new_tokens=2)
