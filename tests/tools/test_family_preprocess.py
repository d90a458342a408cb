"""llama_preprocess.py for every family: a HF model folder as --model_file, each family's bos/eos rules, --eos_token,
and qa rows rendered with the folder's own Jinja chat template, checked against transformers."""
import json
import shutil

import numpy as np
import pytest

from mindformers.tools.dataset_preprocess.llama.llama_preprocess import main
from mindformers.tools.dataset_preprocess.text_sources import iter_documents
from tests.fixtures.instruction_data import sharegpt_records
from tests.tools.test_instruction_data import read_rows

transformers = pytest.importorskip("transformers")
SEQ = 48
IGNORE = -100


@pytest.fixture(scope="module")
def docs_file(tmp_path_factory, sample_text_files):
    documents = list(iter_documents(sample_text_files))[:6]
    path = tmp_path_factory.mktemp("family_docs") / "docs.txt"
    path.write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    return path, documents


@pytest.mark.parametrize("name, starts_with_bos", [("qwen2", False), ("gemma", True), ("yi", False)])
def test_wiki_rows_follow_each_familys_bos_and_eos(name, starts_with_bos, family_folders, docs_file, tmp_path):
    """[bos] document [eos] with bos only where the family adds it; the ids are transformers' own."""
    family = family_folders(name)
    path, documents = docs_file
    output = tmp_path / "wiki.mindrecord"
    main(["--dataset_type", "wiki", "--input_glob", str(path), "--model_file", family.folder, "--seq_length",
          str(SEQ), "--output_file", str(output)])
    theirs = family.load_transformers()
    stream = []
    for text in documents:
        stream += ([theirs.bos_token_id] if starts_with_bos else []) + theirs.encode(text, add_special_tokens=False)
        stream.append(theirs.eos_token_id)
    rows = np.stack([row["input_ids"] for row in read_rows(output)])
    np.testing.assert_array_equal(rows.reshape(-1), stream[:rows.size])


def run_failing(args, capsys):
    """main() with a user error: exit code 2 and one 'error:' line on stderr (what the CLI prints)."""
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_eos_token_names_the_document_end(family_folders, docs_file, tmp_path, capsys):
    """A folder whose files name no eos (as a GGUF export may leave it) needs --eos_token; a chat folder may
    name another document end than its turn end."""
    folder = tmp_path / "no_eos"
    shutil.copytree(family_folders("qwen2").folder, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["eos_token"] = None
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    path, documents = docs_file
    args = ["--dataset_type", "wiki", "--input_glob", str(path), "--model_file", str(folder), "--seq_length", str(SEQ)]
    line = run_failing(args + ["--output_file", str(tmp_path / "a.mindrecord")], capsys)
    assert "--model_file" in line and "defines no eos token" in line and "--eos_token" in line
    line = run_failing(args + ["--output_file", str(tmp_path / "b.mindrecord"), "--eos_token", "<|nope|>"], capsys)
    assert line == f"error: --eos_token: '<|nope|>' is not a token of {folder}"
    assert not list(tmp_path.glob("*.mindrecord*"))
    main(args + ["--output_file", str(tmp_path / "c.mindrecord"), "--eos_token", "<|im_end|>"])
    rows = np.stack([row["input_ids"] for row in read_rows(tmp_path / "c.mindrecord")]).reshape(-1)
    im_end = transformers.AutoTokenizer.from_pretrained(str(folder)).convert_tokens_to_ids("<|im_end|>")
    first = len(transformers.AutoTokenizer.from_pretrained(str(folder)).encode(documents[0]))
    assert rows[first] == im_end and (rows == im_end).sum() >= 2


@pytest.mark.parametrize("name, turn_end", [("qwen2", "<|im_end|>\n"), ("gemma", "<end_of_turn>\n")])
def test_qa_rows_with_the_folders_chat_template(name, turn_end, family_folders, sample_text_files, tmp_path):
    """--template tokenizer: input_ids are transformers' apply_chat_template ids of the whole conversation, padded,
    and exactly the assistant replies with their end of turn are learned (a Jinja template writes its own bos)."""
    family = family_folders(name)
    records = sharegpt_records(sample_text_files[0], limit=8)
    records[1]["conversations"].insert(0, {"from": "system", "value": "Answer briefly."})  # Gemma refuses these
    source = tmp_path / "chat.json"
    source.write_text(json.dumps(records), encoding="utf-8")
    output = tmp_path / "qa.mindrecord"
    seq = 400
    counts = main(["--dataset_type", "qa", "--input_glob", str(source), "--model_file", family.folder, "--seq_length",
                   str(seq), "--output_file", str(output), "--template", "tokenizer"])
    theirs = family.load_transformers()
    roles = {"system": "system", "human": "user", "gpt": "assistant"}
    used = [record for record in records if name != "gemma" or record["conversations"][0]["from"] != "system"]
    assert counts["rows"] == len(used) and sum(counts["skipped"].values()) == len(records) - len(used)
    for row, record in zip(read_rows(output), used):
        messages = [{"role": roles[turn["from"]], "content": turn["value"]} for turn in record["conversations"]]
        expected = theirs.apply_chat_template(messages, return_dict=False)
        assert len(expected) <= seq + 1
        ids, labels = row["input_ids"], row["labels"]
        np.testing.assert_array_equal(ids[:len(expected)], expected)
        assert (ids[len(expected):] == theirs.pad_token_id).all() and (labels[len(expected):] == IGNORE).all()
        replies = [m["content"].strip() if name == "gemma" else m["content"] for m in messages
                   if m["role"] == "assistant"]
        assert theirs.decode(ids[labels != IGNORE].tolist()) == "".join(reply + turn_end for reply in replies)


def test_template_errors_are_one_line(family_folders, sample_text_files, tmp_path, capsys):
    source = tmp_path / "chat.json"
    source.write_text(json.dumps(sharegpt_records(sample_text_files[0], limit=2)), encoding="utf-8")
    args = ["--dataset_type", "qa", "--input_glob", str(source), "--seq_length", "64",
            "--output_file", str(tmp_path / "qa.mindrecord")]
    line = run_failing(args + ["--model_file", family_folders("aquila2").folder, "--template", "tokenizer"], capsys)
    assert line.startswith("error: --template tokenizer: chat_template: the tokenizer has none")
    line = run_failing(args + ["--model_file", family_folders("qwen2").folder, "--template", "absent.jinja"], capsys)
    assert line == "error: --template: chat template file not found: absent.jinja"
    broken = tmp_path / "broken.jinja"
    broken.write_text("{% for message in messages %}{{ message['content'] }}")
    line = run_failing(args + ["--model_file", family_folders("qwen2").folder, "--template", str(broken)], capsys)
    assert line.startswith("error: chat_template: line 1: not a valid Jinja template")
    assert not list(tmp_path.glob("qa.mindrecord*"))


def test_chatglm3_rows_start_with_gmask_sop(family_folders, docs_file, sample_text_files, tmp_path):
    """ChatGLM3's documents are [gMASK] sop document </s> (its text start, not a bos); its fschat conversations
    start with [gMASK] sop <|user|>, and only replies are learned."""
    from mindformers.models.chatglm3 import ChatGLM3Tokenizer  # pylint: disable=import-outside-toplevel
    folder = family_folders("chatglm3").folder
    ours = ChatGLM3Tokenizer(folder)
    start = [ours.convert_tokens_to_ids("[gMASK]"), ours.convert_tokens_to_ids("sop")]
    path, documents = docs_file
    main(["--dataset_type", "wiki", "--input_glob", str(path), "--model_file", folder, "--seq_length", str(SEQ),
          "--output_file", str(tmp_path / "wiki.mindrecord")])
    stream = [i for text in documents for i in start + ours.encode(text, add_special_tokens=False) + [ours.eos_token_id]]
    rows = np.stack([row["input_ids"] for row in read_rows(tmp_path / "wiki.mindrecord")])
    np.testing.assert_array_equal(rows.reshape(-1), stream[:rows.size])

    source = tmp_path / "chat.json"
    source.write_text(json.dumps(sharegpt_records(sample_text_files[0], limit=4)), encoding="utf-8")
    main(["--dataset_type", "qa", "--input_glob", str(source), "--model_file", folder, "--seq_length", "400",
          "--output_file", str(tmp_path / "qa.mindrecord"), "--template", "chatglm3"])
    for row in read_rows(tmp_path / "qa.mindrecord"):
        assert row["input_ids"][:3].tolist() == start + [ours.convert_tokens_to_ids("<|user|>")]
        assert (row["labels"][:3] == IGNORE).all() and (row["labels"] != IGNORE).any()
