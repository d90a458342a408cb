"""alpaca_converter.py and llama_preprocess.py --dataset_type qa: real sample-text Q&A -> labelled MindRecord rows."""
import json

import numpy as np
import pytest
from fastchat.conversation import get_conv_template
from mindspore.mindrecord import FileReader

from mindformers.models.llama.llama_tokenizer import LlamaTokenizer
from mindformers.tools.dataset_preprocess.conversation_records import alpaca_prompt
from mindformers.tools.dataset_preprocess.llama import alpaca_converter, llama_preprocess
from tests.fixtures.instruction_data import QA_SEQ_LENGTH, sharegpt_records

IGNORE = -100
VICUNA_SEQ = 320  # the vicuna system prompt alone is ~110 tokens of the 600-piece test tokenizer


def read_rows(path):
    reader = FileReader(str(path))
    try:
        rows = list(record for _, record in zip(range(10 ** 6), reader.get_next()))
    finally:
        reader.close()
    return rows


def preprocess(tmp_path, input_path, *extra, seq=QA_SEQ_LENGTH, model_file):
    output = tmp_path / "qa.mindrecord"
    counts = llama_preprocess.main(["--dataset_type", "qa", "--input_glob", str(input_path), "--model_file",
                                    str(model_file), "--seq_length", str(seq), "--output_file", str(output),
                                    *extra])
    return counts, read_rows(output)


def learned_spans(labels):
    """Runs of consecutive learned positions as (start, end)."""
    learned = np.concatenate([[False], labels != IGNORE, [False]])
    edges = np.flatnonzero(np.diff(learned.astype(int)))
    return list(zip(edges[::2], edges[1::2]))


def test_converter_then_qa_rows(tmp_path, alpaca_json, sp_model_file, capsys):
    rows = json.load(open(alpaca_json, encoding="utf-8"))
    source = tmp_path / "alpaca.json"
    source.write_text(json.dumps(rows + [{"instruction": "", "output": "x"}, "not a row"]), encoding="utf-8")
    conversations = tmp_path / "out" / "conv.json"
    records, skipped = alpaca_converter.main(["--data_path", str(source), "--output_path", str(conversations)])
    assert len(records) == len(rows) and sum(skipped.values()) == 2
    assert "rows skipped: 2" in capsys.readouterr().out
    written = json.load(open(conversations, encoding="utf-8"))
    assert written[2]["conversations"][0] == {"from": "human",
                                              "value": rows[2]["instruction"] + "\n\n" + rows[2]["input"]}
    assert written[0]["conversations"][1] == {"from": "gpt", "value": rows[0]["output"]}

    counts, out = preprocess(tmp_path, conversations, seq=VICUNA_SEQ, model_file=sp_model_file)
    tokenizer = LlamaTokenizer(vocab_file=sp_model_file)
    assert counts["rows"] == len(out) == len(rows) - sum(counts["skipped"].values())
    for row, source_row in zip(out[:10], rows):
        ids, labels = row["input_ids"], row["labels"]
        assert ids.dtype == labels.dtype == np.int32 and ids.shape == labels.shape == (VICUNA_SEQ + 1,)
        assert ids[0] == tokenizer.bos_token_id
        spans = learned_spans(labels)
        assert len(spans) == 1
        start, end = spans[0]
        assert (labels[start:end] == ids[start:end]).all()
        # everything before the reply is the vicuna prompt; the reply decodes to the answer and ends in eos
        if end < len(ids):  # not truncated
            assert ids[end - 1] == tokenizer.eos_token_id
            assert tokenizer.decode(ids[start:end].tolist(), skip_special_tokens=True).strip() == \
                source_row["output"]
            assert (ids[end:] == 0).all()  # padding, never learned
        conv = get_conv_template("vicuna_v1.1")
        conv.append_message(conv.roles[0], alpaca_prompt(source_row["instruction"],
                                                                          source_row["input"]))
        conv.append_message(conv.roles[1], None)
        prompt_ids = [tokenizer.bos_token_id] + tokenizer.encode(conv.get_prompt(), add_special_tokens=False)
        assert ids[:start].tolist() == prompt_ids[:start]


def test_sharegpt_multi_turn_and_unusable_rows(tmp_path, sample_text_files, sp_model_file, capsys):
    records = sharegpt_records(sample_text_files[0], limit=6)
    bad = [{"id": "x"},  # no conversations
           {"conversations": [{"from": "human", "value": "q"}, {"from": "robot", "value": "a"}]},
           {"conversations": [{"from": "human", "value": "q"}, {"from": "human", "value": "q2"}]},
           {"conversations": [{"from": "human", "value": "only a question"}]},
           [1, 2]]
    path = tmp_path / "share.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records + bad) + "\n", encoding="utf-8")
    counts, out = preprocess(tmp_path, path, "--template", "llama-2", seq=256, model_file=sp_model_file)
    assert counts["rows"] == 6 and sum(counts["skipped"].values()) == 5
    assert "skipped: 5" in capsys.readouterr().out
    tokenizer = LlamaTokenizer(vocab_file=sp_model_file)
    for row, record in zip(out, records):
        spans = learned_spans(row["labels"])
        assert len(spans) == 2  # both assistant turns, neither user turn
        for (start, end), turn in zip(spans, record["conversations"][1::2]):
            text = tokenizer.decode(row["input_ids"][start:end].tolist(), skip_special_tokens=True)
            assert text.strip() == turn["value"].strip()


def test_truncation_keeps_rows_with_a_reply(tmp_path, alpaca_json, sp_model_file):
    counts, out = preprocess(tmp_path, alpaca_json, seq=QA_SEQ_LENGTH, model_file=sp_model_file)
    assert counts["truncated"] > 0 and counts["skipped"].get("no assistant token within seq_length", 0) > 0
    assert all((row["labels"][1:] != IGNORE).any() for row in out)


@pytest.mark.parametrize("content,fragments", [
    ('[{"conversations": [', ["bad.json:1", "not valid JSON"]),
    ('{"conversations": []}', ["bad.json", "expected a JSON list"]),
])
def test_malformed_file_is_one_line_error(tmp_path, sp_model_file, capsys, content, fragments):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        preprocess(tmp_path, path, model_file=sp_model_file)
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and all(fragment in lines[0] for fragment in fragments), lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]


def test_unknown_template_and_bad_converter_input(tmp_path, alpaca_json, sp_model_file, capsys):
    with pytest.raises(SystemExit):
        preprocess(tmp_path, alpaca_json, "--template", "vicuna_v9", model_file=sp_model_file)
    assert "--template: unknown fschat template 'vicuna_v9'" in capsys.readouterr().err
    bad = tmp_path / "a.json"
    bad.write_text("{oops", encoding="utf-8")
    with pytest.raises(SystemExit):
        alpaca_converter.main(["--data_path", str(bad), "--output_path", str(tmp_path / "c.json")])
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "c.json").exists()


def test_shipped_samples_are_what_the_builder_makes(tmp_path):
    from tests.fixtures.instruction_data import REPO, instruction_sample
    instruction_sample.main(["--output_dir", str(tmp_path)])
    for name in (instruction_sample.ALPACA, instruction_sample.SHAREGPT):
        shipped = open(f"{REPO}/datasets/sample/{name}", encoding="utf-8").read()
        assert shipped == (tmp_path / name).read_text(encoding="utf-8"), name
