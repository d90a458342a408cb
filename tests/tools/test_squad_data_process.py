"""squad_data_process.py: a tiny SQuAD-format file (contexts from the shipped sample text) -> train/eval rows."""
import json

import numpy as np
import pytest
from mindspore.mindrecord import FileReader

from mindformers.models.llama.llama_tokenizer import LlamaTokenizer
from mindformers.tools.dataset_preprocess.llama import squad_data_process
from tests.e2e.helpers import assert_one_line_error, run_cli
from tests.fixtures.instruction_data import topic_documents

SCRIPT = "mindformers/tools/dataset_preprocess/llama/squad_data_process.py"


def squad_file(tmp_path, sample_path, articles=3):
    data = []
    for title, paragraphs in list(topic_documents(sample_path))[:articles]:
        context = paragraphs[0][:240]
        answer = context.split()[0] + " " + context.split()[1]
        data.append({"title": title, "paragraphs": [{"context": context, "qas": [
            {"id": f"{title}-1", "question": f"What is this passage about? ({title})",
             "answers": [{"text": answer, "answer_start": 0}]},
            {"id": f"{title}-2", "question": "Unanswerable?", "answers": []}]}]})
    path = tmp_path / "dev-v1.1.json"
    path.write_text(json.dumps({"version": "1.1", "data": data}), encoding="utf-8")
    return path, data


def read(path):
    reader = FileReader(str(path))
    try:
        return [record for _, record in zip(range(10 ** 6), reader.get_next())]
    finally:
        reader.close()


def test_train_and_eval_rows(tmp_path, sample_text_files, sp_model_file):
    source, data = squad_file(tmp_path, sample_text_files[0])
    tokenizer = LlamaTokenizer(vocab_file=sp_model_file)
    for mode, length in (("train", 257), ("eval", 256)):
        out = tmp_path / f"{mode}.mindrecord"
        counts = squad_data_process.main(["--input_file", str(source), "--output_file", str(out), "--mode", mode,
                                          "--max_length", "256", "--tokenizer_type", str(sp_model_file)])
        assert counts["rows"] == 3 and counts["unanswered"] == 3
        rows = read(out)
        for row, article in zip(rows, data):
            answer = article["paragraphs"][0]["qas"][0]["answers"][0]["text"]
            ids, labels = row["input_ids"], row["labels"]
            assert ids.shape == labels.shape == (length,) and ids[0] == tokenizer.bos_token_id
            if mode == "train":
                learned = ids[labels != -100].tolist()
                assert learned[-1] == tokenizer.eos_token_id
                assert tokenizer.decode(learned, skip_special_tokens=True).strip() == answer
            else:
                prompt = tokenizer.decode(ids.tolist(), skip_special_tokens=True)
                assert prompt.endswith("### Response:") and article["paragraphs"][0]["context"] in prompt
                assert tokenizer.decode(labels[labels != 0].tolist()).strip() == answer


def test_published_command_line_and_errors(tmp_path, sample_text_files, sp_model_file):
    source, _ = squad_file(tmp_path, sample_text_files[0], articles=1)
    out = tmp_path / "squad.mindrecord"
    result = run_cli([SCRIPT, "--input_file", source, "--output_file", out, "--mode", "eval", "--max_length", "64",
                      "--tokenizer_type", "llama2_7b", "--model_file", sp_model_file])
    assert result.returncode == 2 and "fits --max_length 64" in result.stderr  # the prompt alone is longer
    assert not out.exists()
    assert_one_line_error(run_cli([SCRIPT, "--input_file", source, "--output_file", out, "--tokenizer_type",
                                   "llama2_7b"]), "--tokenizer_type", "llama2_7b", "not downloaded")
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [{"paragraphs": [{"qas": []}]}]}', encoding="utf-8")
    with pytest.raises(SystemExit):
        squad_data_process.main(["--input_file", str(bad), "--output_file", str(out), "--model_file",
                                 str(sp_model_file)])
    assert not out.exists()
