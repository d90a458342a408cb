"""Tokenizer training: Llama-style sentencepiece and Llama-3-style tokenizer.json, deterministic and atomic."""
import json
import os
import subprocess
import sys

import pytest

from mindformers.tools.errors import ConfigError, DataError
from mindformers.tools.tokenizer_training import (llama3_special_tokens, main, train_bpe_tokenizer_json,
                                                  train_sentencepiece)
from tests.fixtures.tokenizers import REPO


def read_proto(path):
    from sentencepiece import sentencepiece_model_pb2

    with open(path, "rb") as stream:
        return sentencepiece_model_pb2.ModelProto.FromString(stream.read())


def test_sentencepiece_model_is_llama_style(sp_model_file):
    import sentencepiece as spm

    proto = read_proto(sp_model_file)
    spec, norm = proto.trainer_spec, proto.normalizer_spec
    assert len(proto.pieces) == 600
    assert [p.piece for p in proto.pieces[:3]] == ["<unk>", "<s>", "</s>"]
    assert [p.piece for p in proto.pieces[3:5]] == ["<0x00>", "<0x01>"] and proto.pieces[258].piece == "<0xFF>"
    assert spec.model_type == spec.BPE and spec.byte_fallback and spec.split_digits
    assert (spec.unk_id, spec.bos_id, spec.eos_id, spec.pad_id) == (0, 1, 2, -1)
    assert norm.name == "identity" and norm.add_dummy_prefix and not norm.remove_extra_whitespaces
    sp = spm.SentencePieceProcessor(model_file=sp_model_file)
    assert [p for p in sp.encode("2024", out_type=str) if p != "\u2581"] == ["2", "0", "2", "4"]
    assert "<0xF0>" in sp.encode("😀", out_type=str)  # unseen characters fall back to bytes, not <unk>
    assert sp.decode(sp.encode("x  =  [1,\t2]")) == "x  =  [1,\t2]"  # whitespace is kept as is


def test_bpe_tokenizer_json_is_llama3_style(bpe_tokenizer_json):
    from tokenizers import Tokenizer

    with open(bpe_tokenizer_json, encoding="utf-8") as stream:
        spec = json.load(stream)
    assert spec["model"]["type"] == "BPE" and spec["model"]["ignore_merges"]
    split, byte_level = spec["pre_tokenizer"]["pretokenizers"]
    assert split["type"] == "Split" and r"\p{N}{1,3}" in split["pattern"]["Regex"]
    assert byte_level["type"] == "ByteLevel" and not byte_level["use_regex"]
    assert spec["decoder"]["type"] == "ByteLevel"
    template = spec["post_processor"]["processors"][-1]
    assert template["type"] == "TemplateProcessing"
    assert template["single"][0] == {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}
    tokenizer = Tokenizer.from_file(bpe_tokenizer_json)
    assert tokenizer.get_vocab_size() == 1000 and tokenizer.get_vocab_size(with_added_tokens=False) == 984
    specials = llama3_special_tokens(16)
    assert [t["content"] for t in spec["added_tokens"]] == specials
    assert [t["id"] for t in spec["added_tokens"]] == list(range(984, 1000))
    assert all(t["special"] for t in spec["added_tokens"])
    assert specials[:3] == ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>"]
    assert specials[6:10] == ["<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_4|>",
                              "<|eot_id|>"]
    encoding = tokenizer.encode("x = 12345")
    assert encoding.ids[0] == 984 and tokenizer.decode(encoding.ids, skip_special_tokens=True) == "x = 12345"
    pieces = [piece for piece, _ in tokenizer.pre_tokenizer.pre_tokenize_str("x = 12345")]
    assert pieces == ["x", "Ġ=", "Ġ", "123", "45"]  # Llama 3 splits digits in groups of three


def test_training_is_deterministic_and_leaves_no_temp_files(tmp_path, sample_text_files, sp_model_file,
                                                            bpe_tokenizer_json):
    # Same file name as the fixture's: the model records its prefix's base name.
    model = train_sentencepiece(sample_text_files, str(tmp_path / "tokenizer.model"), 600, num_threads=2)
    assert model == str(tmp_path / "tokenizer.model")
    with open(model, "rb") as mine, open(sp_model_file, "rb") as theirs:
        assert mine.read() == theirs.read()
    path = train_bpe_tokenizer_json(sample_text_files, tmp_path / "bpe.json", 1000, num_special_tokens=16)
    with open(path, "rb") as mine, open(bpe_tokenizer_json, "rb") as theirs:
        assert mine.read() == theirs.read()
    assert sorted(os.listdir(tmp_path)) == ["bpe.json", "tokenizer.model", "tokenizer.vocab"]


def test_bad_inputs_raise_user_errors_and_write_nothing(tmp_path, sample_text_files):
    with pytest.raises(DataError, match="text file not found: .*absent.txt"):
        train_sentencepiece([str(tmp_path / "absent.txt")], str(tmp_path / "m"), 600)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        train_bpe_tokenizer_json([str(empty)], str(tmp_path / "t.json"), 1000)
    with pytest.raises(ConfigError, match="expected vocab_size >= 260"):
        train_sentencepiece(sample_text_files, str(tmp_path / "m"), 100)
    with pytest.raises(ConfigError, match="Vocabulary size is smaller than required_chars"):
        train_sentencepiece(sample_text_files, str(tmp_path / "m"), 270)  # the text needs more characters
    with pytest.raises(ConfigError, match="expected vocab_size >= 513"):
        train_bpe_tokenizer_json(sample_text_files, str(tmp_path / "t.json"), 400)
    with pytest.raises(ConfigError, match="num_special_tokens"):
        train_bpe_tokenizer_json(sample_text_files, str(tmp_path / "t.json"), 1000, num_special_tokens=1)
    assert sorted(os.listdir(tmp_path)) == ["empty.txt"]


def test_cli_trains(tmp_path, sample_text_files, capsys):
    path = main(["--input", *sample_text_files, "--output", str(tmp_path / "tok.json"), "--vocab_size", "600",
                 "--kind", "bpe", "--num_special_tokens", "8"])
    assert path == str(tmp_path / "tok.json") and f"wrote {path}" in capsys.readouterr().out
    with open(path, encoding="utf-8") as stream:
        assert len(json.load(stream)["added_tokens"]) == 8
    assert main(["--input", *sample_text_files, "--output", str(tmp_path / "sp"), "--vocab_size", "400"]) == str(
        tmp_path / "sp.model")


def test_cli_vocab_too_small_is_one_line_exit_2(tmp_path, sample_text_files, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--input", *sample_text_files, "--output", str(tmp_path / "m"), "--vocab_size", "50"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --vocab_size: 50 is too small") and ">= 260" in err
    assert os.listdir(tmp_path) == []


def test_cli_missing_input_in_a_subprocess(tmp_path):
    # As users run it: one line on stderr naming the file, exit code 2, no traceback, nothing written.
    result = subprocess.run([sys.executable, "-m", "mindformers.tools.tokenizer_training", "--input",
                             str(tmp_path / "absent.txt"), "--output", str(tmp_path / "m"), "--vocab_size", "600"],
                            cwd=REPO, env=dict(os.environ, GLOG_v="3", PYTHONWARNINGS="ignore"),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --input: text file not found: "), result.stderr
    assert "absent.txt" in lines[0]
    assert os.listdir(tmp_path) == []
