"""Mistakes in the task name, the data folder or its rows: one line naming the path (and row) and what was expected,
and no results file."""
import json
import os

import pytest

from mindformers.evaluation import BENCHMARK_TASKS, default_max_new_tokens, run_benchmark_task
from mindformers.tools.errors import ConfigError, DataError
from tests.evaluation.fakes import AnswerKeyModel
from tests.fixtures.benchmark_data import HUMAN_EVAL, write_csv, write_jsonl


@pytest.fixture
def model(tokenizer):
    """Never asked anything: every case here fails before the model runs."""
    return AnswerKeyModel(tokenizer, {})


def fails(error_type, model, tokenizer, task, data_path, output_dir, **options):
    with pytest.raises(error_type) as caught:
        run_benchmark_task(task, model, tokenizer, str(data_path), str(output_dir), **options)
    message = str(caught.value)
    assert "\n" not in message
    assert not os.path.exists(output_dir) or os.listdir(output_dir) == [], "something was written"
    return message


def test_generation_lengths_follow_lm_eval():
    """lm-eval's max_gen_toks (choice tasks generate nothing)."""
    assert {task: default_max_new_tokens(task) for task in BENCHMARK_TASKS} == {
        "mmlu": 1, "ceval": 1, "boolq": 1, "agieval": 1, "bbh": 1024, "gsm8k": 256, "human_eval": 1024}


def test_unknown_task_and_bad_settings(model, tokenizer, benchmark_folders, tmp_path):
    out = tmp_path / "out"
    message = fails(ConfigError, model, tokenizer, "mmlu_pro", benchmark_folders["mmlu"], out)
    assert "eval_task: unknown task 'mmlu_pro'" in message and "human_eval" in message
    assert "evaluation_batch_size" in fails(ConfigError, model, tokenizer, "mmlu", benchmark_folders["mmlu"], out,
                                            batch_size=0)
    message = fails(ConfigError, model, tokenizer, "gsm8k", benchmark_folders["gsm8k"], out, max_new_tokens=511)
    assert "max_new_tokens: 511 leaves no room" in message and "seq_length 512" in message


@pytest.mark.parametrize("task", sorted(BENCHMARK_TASKS))
def test_a_folder_without_the_task_files(task, model, tokenizer, tmp_path):
    missing = tmp_path / "nowhere"
    message = fails(ConfigError, model, tokenizer, task, missing, tmp_path / "out")
    assert f"eval_data_path: {missing}: not found (expected" in message
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a dataset")
    message = fails(ConfigError, model, tokenizer, task, empty, tmp_path / "out")
    assert f"eval_data_path: {empty}: no " in message and "(expected " in message


def test_files_without_questions(model, tokenizer, tmp_path):
    write_csv(str(tmp_path / "mmlu" / "data" / "test" / "anatomy_test.csv"), [])
    message = fails(ConfigError, model, tokenizer, "mmlu", tmp_path / "mmlu", tmp_path / "out")
    assert f"eval_data_path: {tmp_path / 'mmlu'}: the mmlu files hold no questions (expected data/test/" in message
    write_jsonl(str(tmp_path / "boolq" / "dev.jsonl"), [])
    message = fails(ConfigError, model, tokenizer, "boolq", tmp_path / "boolq", tmp_path / "out")
    assert "the boolq files hold no questions (expected dev.jsonl" in message


def write_text(root, name, text):
    root.mkdir()
    (root / name).write_text(text, encoding="utf-8")
    return root


def write_mmlu_test(root, rows):
    write_csv(str(root / "data" / "test" / "anatomy_test.csv"), rows)
    return root / "data" / "test"


BAD_ROWS = {
    "mmlu: a row with five columns": (
        "mmlu", lambda root: write_mmlu_test(root, [("Q?", "a", "b", "c", "d", "A"), ("Q?", "a", "b", "c", "A")]),
        "anatomy_test.csv: line 2: expected 6 columns (question,A,B,C,D,answer), got 5"),
    "mmlu: an answer that is not a letter": (
        "mmlu", lambda root: write_mmlu_test(root, [("Q?", "a", "b", "c", "d", "E")]),
        "anatomy_test.csv: row 1: answer: expected one of A, B, C, D, got 'E'"),
    "ceval: a header without the answer column": (
        "ceval", lambda root: write_csv(str(root / "val" / "law_val.csv"), [(0, "Q?", "a", "b", "c", "d")],
                                        header=("id", "question", "A", "B", "C", "D")) or root,
        "law_val.csv: header: missing column(s) answer"),
    "boolq: a string answer": (
        "boolq", lambda root: write_jsonl(str(root / "dev.jsonl"),
                                          [{"question": "q", "passage": "p", "answer": "yes"}]) or root,
        "dev.jsonl: line 1: answer: expected true or false, got 'yes'"),
    "boolq: a line that is not JSON": (
        "boolq", lambda root: write_text(root, "dev.jsonl",
                                         json.dumps({"question": "q", "passage": "p"}) + "\n{oops\n"),
        "dev.jsonl: line 2: not valid JSON"),
    "gsm8k: an answer without ####": (
        "gsm8k", lambda root: write_jsonl(str(root / "test.jsonl"), [{"question": "q", "answer": "42"}]) or root,
        "test.jsonl: line 1: answer: expected text ending in '#### <number>'"),
    "bbh: a file without examples": (
        "bbh", lambda root: write_text(root, "navigate.json", json.dumps({"rows": []})),
        "navigate.json: missing examples"),
    "bbh: a task without its cot-prompts file": (
        "bbh", lambda root: write_text(root, "navigate.json", json.dumps({"examples": []})),
        "no cot-prompts/navigate.txt beside the task files"),
    "bbh: a cot-prompts file with too few examples": (
        "bbh", lambda root: (write_text(root, "navigate.json", json.dumps({"examples": []})), write_text(
            root / "cot-prompts", "navigate.txt", "canary\n-----\nNavigate.\n\nQ: one\nA: x"))[0],
        "navigate.txt: expected a description and 3 worked examples separated by blank lines, got 1"),
    "agieval: a label that is no option": (
        "agieval", lambda root: write_jsonl(str(root / "sat-math.jsonl"), [
            {"passage": None, "question": "q", "options": ["(A)1", "(B)2"], "label": "C"}]) or root,
        "sat-math.jsonl: line 1: label: expected one of A, B (or a list of them), got 'C'"),
    "human_eval: a row without entry_point": (
        "human_eval", lambda root: write_jsonl(str(root / "HumanEval.jsonl"), [
            {k: v for k, v in HUMAN_EVAL[0].items() if k != "entry_point"}]) or root,
        "HumanEval.jsonl: line 1: missing entry_point"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_a_bad_row_names_the_file_and_row(case, model, tokenizer, tmp_path):
    task, write, fragment = BAD_ROWS[case]
    data_path = write(tmp_path / "data")
    message = fails(DataError, model, tokenizer, task, data_path, tmp_path / "out")
    assert fragment in message, message
