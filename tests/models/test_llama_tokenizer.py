"""LlamaTokenizer / LlamaTokenizerFast: same ids and text as transformers on the same files, plus the HF call API."""
import os
import pickle
import re
import shutil

import numpy as np
import pytest

from mindformers.models.llama import LlamaProcessor, LlamaTokenizer, LlamaTokenizerFast
from mindformers.models.tokenization_utils import check_tokenizer_fits_model
from mindformers.tools.errors import ConfigError, DataError
from mindformers.tools.register import MindFormerModuleType, build_from_config
from tests.fixtures.tokenizers import CRAFTED, REPO, sample_lines


# ---- fixtures: our tokenizers and transformers' on the same files ----------------------------------------------
@pytest.fixture(scope="module")
def llama(sp_model_file):
    return LlamaTokenizer(vocab_file=sp_model_file, pad_token="<unk>")


@pytest.fixture(scope="module")
def hf_llama(sp_model_file, tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("hf_sp")
    shutil.copyfile(sp_model_file, folder / "tokenizer.model")
    return transformers.LlamaTokenizer.from_pretrained(str(folder), add_bos_token=True)


@pytest.fixture(scope="module")
def fast(bpe_tokenizer_json):
    # The keys configs/llama3/llama3_base.yaml passes.
    return LlamaTokenizerFast(tokenizer_file=bpe_tokenizer_json, bos_token="<|begin_of_text|>",
                              eos_token="<|end_of_text|>", pad_token="<|reserved_special_token_0|>")


@pytest.fixture(scope="module")
def hf_fast(bpe_tokenizer_json, tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("hf_json")
    shutil.copyfile(bpe_tokenizer_json, folder / "tokenizer.json")
    return [transformers.AutoTokenizer.from_pretrained(str(folder)),
            transformers.PreTrainedTokenizerFast(tokenizer_file=bpe_tokenizer_json)]


def assert_same_as_hf(ours, theirs, texts):
    for text in texts:
        ids = ours(text)["input_ids"]
        for other in theirs:
            assert ids == other(text)["input_ids"], text
            for skip in (False, True):
                assert ours.decode(ids, skip_special_tokens=skip) == other.decode(
                    ids, skip_special_tokens=skip, clean_up_tokenization_spaces=False), text


# ---- parity ------------------------------------------------------------------------------------------------------
def test_sentencepiece_ids_and_text_match_transformers(llama, hf_llama, sample_text_files):
    assert_same_as_hf(llama, [hf_llama], sample_lines(sample_text_files) + CRAFTED)
    batch = sample_lines(sample_text_files, 64)
    assert llama(batch)["input_ids"] == hf_llama(batch)["input_ids"]
    assert llama.tokenize("a</s>b  c") == hf_llama.tokenize("a</s>b  c")


def test_sentencepiece_legacy_matches_transformers_legacy(sp_model_file, tmp_path):
    transformers = pytest.importorskip("transformers")
    shutil.copyfile(sp_model_file, tmp_path / "tokenizer.model")
    theirs = transformers.LlamaTokenizer.from_pretrained(str(tmp_path), add_bos_token=True, legacy=True)
    ours = LlamaTokenizer(sp_model_file, legacy=True)
    assert_same_as_hf(ours, [theirs], CRAFTED)
    assert ours.tokenize("a</s>b") == ["\u2581a", "</s>", "\u2581b"]  # the prefix comes back after </s>


def test_sentencepiece_random_ids_decode_like_transformers(llama, hf_llama):
    rng = np.random.default_rng(0)
    for _ in range(200):  # includes broken UTF-8 byte runs and special ids in odd places
        ids = rng.integers(0, len(llama), size=int(rng.integers(1, 12))).tolist()
        assert llama.decode(ids) == hf_llama.decode(ids, clean_up_tokenization_spaces=False), ids


def test_fast_ids_and_text_match_transformers(fast, hf_fast, sample_text_files):
    assert_same_as_hf(fast, hf_fast, sample_lines(sample_text_files) + CRAFTED)
    assert fast.tokenize("it's 12345") == hf_fast[1].tokenize("it's 12345")


# ---- round trip and special tokens ---------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["llama", "fast"])
def test_encode_decode_round_trip(which, request, sample_text_files):
    tokenizer = request.getfixturevalue(which)
    lines = sample_lines(sample_text_files) + CRAFTED
    if which == "llama":
        # As in transformers 5, a leading space is not doubled by the prefix on encode, and decode drops one.
        lines = [line for line in lines if not line.startswith((" ", "\u2581"))]
    for line in lines:
        ids = tokenizer.encode(line, add_special_tokens=False)
        assert tokenizer.decode(ids) == line
        if not any(token in line for token in ("<s>", "</s>", "<unk>", "<|")):
            assert tokenizer.decode([tokenizer.bos_token_id] + ids, skip_special_tokens=True) == line
    batch = tokenizer(["x y", "z w and more"], padding=True, return_tensors="np")["input_ids"]
    assert tokenizer.batch_decode(batch, skip_special_tokens=True) == ["x y", "z w and more"]


def test_sentencepiece_special_tokens(llama, sp_model_file):
    assert (llama.unk_token_id, llama.bos_token_id, llama.eos_token_id, llama.pad_token_id) == (0, 1, 2, 0)
    assert len(llama) == llama.vocab_size == 600
    assert sorted(llama.all_special_ids) == [0, 1, 2]
    assert llama.encode("a</s>b")[:2] == [1, llama.encode("a", add_special_tokens=False)[0]]
    assert 2 in llama.encode("a</s>b")
    assert llama.convert_ids_to_tokens([1, 2]) == ["<s>", "</s>"]
    assert llama.convert_tokens_to_ids("</s>") == 2
    with_eos = LlamaTokenizer(sp_model_file, add_bos_token=False, add_eos_token=True)
    assert with_eos.encode("hi")[-1] == 2 and with_eos.encode("hi")[0] != 1
    # A special token the model lacks gets the next id, as in HF; the vocab then no longer fits 600.
    padded = LlamaTokenizer(sp_model_file, pad_token="<pad>")
    assert (padded.pad_token_id, len(padded), padded.vocab_size) == (600, 601, 600)
    assert padded.encode("a<pad>") == [1] + padded.encode("a", add_special_tokens=False) + [600]


def test_fast_layout_and_flags(fast, bpe_tokenizer_json, tmp_path):
    assert (len(fast), fast.vocab_size) == (1000, 984)
    assert (fast.bos_token_id, fast.eos_token_id, fast.pad_token_id) == (984, 985, 986)
    assert fast.unk_token is None and fast.unk_token_id is None
    assert fast.encode("hi")[0] == 984 and fast.encode("hi", add_special_tokens=False)[0] != 984
    no_bos = LlamaTokenizerFast(bpe_tokenizer_json, add_bos_token=False, add_eos_token=True)
    assert no_bos.encode("hi")[0] != 984 and no_bos.encode("hi")[-1] == 985
    # The defaults follow the file: bos/eos taken from its post-processor and vocab.
    plain = LlamaTokenizerFast(vocab_file=str(os.path.dirname(bpe_tokenizer_json)))
    assert (plain.bos_token, plain.eos_token, plain.add_bos_token, plain.add_eos_token) == (
        "<|begin_of_text|>", "<|end_of_text|>", True, False)
    assert fast.decode(fast.encode("a<|eot_id|>b"), skip_special_tokens=True) == "ab"


# ---- the HF call API -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["llama", "fast"])
def test_batch_padding_truncation_and_tensors(which, request):
    tokenizer = request.getfixturevalue(which)
    texts = ["short", "a somewhat longer sentence about Python classes"]
    plain = [tokenizer.encode(t) for t in texts]
    pad = tokenizer.pad_token_id
    longest = max(len(ids) for ids in plain)

    right = tokenizer(texts, padding=True)
    assert right["input_ids"][0] == plain[0] + [pad] * (longest - len(plain[0]))
    assert right["attention_mask"][0] == [1] * len(plain[0]) + [0] * (longest - len(plain[0]))
    assert right["input_ids"][1] == plain[1] and right.attention_mask[1] == [1] * longest

    tokenizer.padding_side = "left"
    try:
        left = tokenizer(texts, padding="longest", return_tensors="np")
    finally:
        tokenizer.padding_side = "right"
    assert left["input_ids"].shape == (2, longest) and left["input_ids"].dtype == np.int64
    assert left["input_ids"][0].tolist() == [pad] * (longest - len(plain[0])) + plain[0]
    assert left["attention_mask"][0].tolist() == [0] * (longest - len(plain[0])) + [1] * len(plain[0])

    fixed = tokenizer(texts, padding="max_length", truncation=True, max_length=4, return_tensors="ms")
    assert fixed["input_ids"].shape == (2, 4) and str(fixed["input_ids"].dtype) == "Int32"
    assert fixed["input_ids"].asnumpy()[1].tolist() == plain[1][:4]  # bos kept, content cut on the right
    assert fixed["input_ids"].asnumpy()[0].tolist()[:len(plain[0])] == plain[0][:4]

    single = tokenizer("short", padding="max_length", max_length=longest, return_attention_mask=False)
    assert set(single) == {"input_ids"} and len(single["input_ids"]) == longest
    assert tokenizer(texts[1], truncation=True, max_length=3)["input_ids"] == plain[1][:3]

    cut_left = request.getfixturevalue(which)
    cut_left.truncation_side = "left"
    try:
        ids = cut_left(texts[1], truncation=True, max_length=3)["input_ids"]
    finally:
        cut_left.truncation_side = "right"
    assert ids == [plain[1][0]] + plain[1][-2:]  # bos stays, the start of the content goes

    with pytest.raises(ValueError, match="padding=True"):
        tokenizer(texts, return_tensors="np")


def test_padding_side_in_init_and_pairs(sp_model_file):
    tokenizer = LlamaTokenizer(sp_model_file, pad_token="<unk>", padding_side="left")
    out = tokenizer(["a", "a b c d"], padding=True)
    assert out["input_ids"][0][0] == 0 and out["attention_mask"][0][0] == 0
    pair = tokenizer.encode("a", text_pair="b")
    assert pair == [1] + tokenizer.encode("a", add_special_tokens=False) + [1] + tokenizer.encode(
        "b", add_special_tokens=False)
    with pytest.raises(ConfigError, match="padding_side"):
        LlamaTokenizer(sp_model_file, padding_side="middle")
    with pytest.raises(ConfigError, match="pad_token"):
        LlamaTokenizer(sp_model_file)(["a", "a b c"], padding=True)


def test_check_tokenizer_fits_model(llama, fast):
    check_tokenizer_fits_model(llama, 600, "processor.tokenizer.vocab_file")
    check_tokenizer_fits_model(fast, 1024, "processor.tokenizer.vocab_file")
    with pytest.raises(ConfigError) as error:
        check_tokenizer_fits_model(llama, 100, "processor.tokenizer.vocab_file")
    assert str(error.value) == ("processor.tokenizer.vocab_file: the tokenizer has 600 tokens but "
                                "model.model_config.vocab_size is 100; expected vocab_size >= 600")


# ---- bad files -----------------------------------------------------------------------------------------------------
def test_missing_and_corrupt_files(tmp_path, sp_model_file, bpe_tokenizer_json):
    missing = str(tmp_path / "absent.model")
    for cls in (LlamaTokenizer, LlamaTokenizerFast):
        with pytest.raises(DataError, match="absent.model"):
            cls(missing)
    corrupt = tmp_path / "corrupt.model"
    corrupt.write_bytes(b"\x00\x01 this is not a sentencepiece model")
    with pytest.raises(DataError, match="corrupt.model: not a valid sentencepiece model"):
        LlamaTokenizer(str(corrupt))
    bad_json = tmp_path / "tokenizer.json"
    bad_json.write_text('{"model": {"type": "BPE", "vocab": ')
    with pytest.raises(DataError, match="tokenizer.json: not a valid tokenizer.json"):
        LlamaTokenizerFast(tokenizer_file=str(bad_json))
    with pytest.raises(DataError, match="goes with LlamaTokenizer"):
        LlamaTokenizerFast(tokenizer_file=sp_model_file)
    with pytest.raises(DataError, match="not a valid sentencepiece model"):
        LlamaTokenizer(bpe_tokenizer_json)
    with pytest.raises(DataError, match="holds no tokenizer.model"):
        LlamaTokenizer(str(tmp_path))


# ---- config builds, processor, pickling, no transformers in the library -------------------------------------------
def test_built_from_config_sections(sp_model_file, bpe_tokenizer_json):
    llama2 = {"type": "LlamaTokenizer", "vocab_file": sp_model_file, "unk_token": "<unk>", "bos_token": "<s>",
              "eos_token": "</s>", "pad_token": "<unk>"}
    tokenizer = build_from_config(llama2, MindFormerModuleType.TOKENIZER, where="processor.tokenizer")
    assert tokenizer.pad_token_id == 0
    processor = build_from_config({"type": "LlamaProcessor", "return_tensors": "ms", "tokenizer": llama2},
                                  MindFormerModuleType.PROCESSOR, where="processor")
    out = processor("Classes are created by the class statement.")
    assert out["input_ids"].shape == (1, 128) and out["input_ids"].asnumpy()[0, 0] == 1
    assert processor.decode(out["input_ids"].asnumpy()[0]) == "Classes are created by the class statement."
    llama3 = {"type": "LlamaTokenizerFast", "tokenizer_file": bpe_tokenizer_json, "bos_token": "<|begin_of_text|>",
              "eos_token": "<|end_of_text|>", "pad_token": "<|reserved_special_token_0|>"}
    processor = LlamaProcessor(tokenizer=llama3, max_length=16, return_tensors="np")
    assert processor(["a", "b c"])["input_ids"].shape == (2, 16)


def test_tokenizers_pickle(llama, fast):
    for tokenizer in (llama, fast):
        clone = pickle.loads(pickle.dumps(tokenizer))
        assert clone.encode("pickled  text</s>") == tokenizer.encode("pickled  text</s>")


def test_library_never_imports_transformers():
    # transformers is a test-only dependency; a static scan covers every module, loaded or not.
    pattern = re.compile(r"^\s*(import|from)\s+transformers\b", re.MULTILINE)
    offenders = []
    for folder, _, names in os.walk(os.path.join(REPO, "mindformers")):
        for name in names:
            if name.endswith(".py"):
                with open(os.path.join(folder, name), encoding="utf-8") as stream:
                    if pattern.search(stream.read()):
                        offenders.append(os.path.relpath(os.path.join(folder, name), REPO))
    assert not offenders, offenders
