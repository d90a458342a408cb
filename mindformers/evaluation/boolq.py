"""BoolQ: yes/no questions about a Wikipedia passage, zero-shot, scored by the log-likelihoods of " no" and " yes"
after "passage / Question: ...? / Answer:", as lm-evaluation-harness's boolq task (SuperGLUE) asks them.

Layout: JSON Lines rows {"question", "passage", "answer": true/false} (the HF `boolq` export; SuperGLUE's
"label" is read as well) in dev.jsonl (SuperGLUE: val.jsonl), or every *.jsonl of the folder, or the file itself.
"""
from mindformers.evaluation.choice_scoring import ChoiceQuestion
from mindformers.evaluation.data_files import read_jsonl
from mindformers.evaluation.jsonl_sources import file_stem, jsonl_files
from mindformers.evaluation.prompts import FewShotPrompt
from mindformers.tools.errors import DataError

DEFAULT_MAX_NEW_TOKENS = 1
LAYOUT = "dev.jsonl (or *.jsonl) rows {question, passage, answer: true/false}"
CHOICES = (" no", " yes")
LABELS = ("no", "yes")


def gold_answer(record, path, number):
    answer = record.get("answer", record.get("label"))
    if not isinstance(answer, bool):
        raise DataError(f"{path}: line {number}: answer: expected true or false, got {answer!r}")
    return 1 if answer else 0


def prompt_text(record):
    """lm-eval's boolq prompt: the question always gets a "?" (BoolQ's questions have none)."""
    return f"{record['passage']}\nQuestion: {record['question']}?\nAnswer:"


def load_questions(data_path):
    questions = []
    for path in jsonl_files(data_path, ("dev.jsonl", "val.jsonl"), "BoolQ", LAYOUT):
        group = file_stem(path)
        for number, record in read_jsonl(path, ("question", "passage")):
            questions.append(ChoiceQuestion(group, FewShotPrompt(prompt_text(record)), CHOICES,
                                            gold_answer(record, path, number), LABELS))
    return questions


def evaluate(run, questions):
    return run.choice_task(questions, "files")
