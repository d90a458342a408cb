"""AGIEval: multiple-choice questions from human exams (LSAT, SAT, GaoKao, LogiQA, ...), one JSON Lines file per
task, zero-shot with AGIEval's published prompts (English and Chinese), scored as lm-evaluation-harness's agieval
tasks score them: each option's full text ("(A)...") is a continuation of the prompt, ranked by log-likelihood;
right when the best one is among the right answers (acc), and also per character of the option (acc_norm).

Layout: <task>.jsonl rows {"passage", "question", "options": ["(A)...", ...], "label": "B"} (a list label names
several right letters). Cloze tasks (rows without options, such as math) are not multiple choice and are skipped.
"""
import logging
import re
import string

from mindformers.evaluation.choice_scoring import ChoiceQuestion
from mindformers.evaluation.data_files import read_jsonl
from mindformers.evaluation.jsonl_sources import file_stem, jsonl_files
from mindformers.evaluation.prompts import FewShotPrompt
from mindformers.tools.errors import DataError

logger = logging.getLogger("mindformers")

DEFAULT_MAX_NEW_TOKENS = 1  # unused: choices are scored, not generated
LAYOUT = "<task>.jsonl rows {passage, question, options: ['(A)...', ...], label}"
CHINESE_TASKS = {"gaokao-chinese", "gaokao-geography", "gaokao-history", "gaokao-biology", "gaokao-chemistry",
                 "gaokao-physics", "gaokao-mathqa", "logiqa-zh", "jec-qa-kd", "jec-qa-ca"}
ENGLISH_TASKS = {"lsat-ar", "lsat-lr", "lsat-rc", "logiqa-en", "sat-math", "sat-en", "sat-en-without-passage",
                 "aqua-rat", "gaokao-english"}
_CJK = re.compile(r"[\u4e00-\u9fff]")


def is_chinese(task, record):
    if task in CHINESE_TASKS or task in ENGLISH_TASKS:
        return task in CHINESE_TASKS
    return bool(_CJK.search(str(record["question"])))


def prompt_text(record, chinese):
    passage = record.get("passage") or ""
    options = " ".join(str(option) for option in record["options"])
    last = string.ascii_uppercase[len(record["options"]) - 1]
    if chinese:
        return f"{passage}问题：{record['question']} 选项：{options}\n答案：从A到{last}, 我们应选择"
    return f"{passage}Q: {record['question']} Answer Choices: {options}\nA: Among A through {last}, the answer is"


def right_letters(record, letters, path, number):
    """The indices of the right choices: the label is a letter or a list of letters."""
    label = record.get("label")
    names = label if isinstance(label, list) else [label]
    if not names or any(not isinstance(name, str) or name.strip() not in letters for name in names):
        raise DataError(f"{path}: line {number}: label: expected one of {', '.join(letters)} (or a list of them), "
                        f"got {label!r}")
    return tuple(sorted({letters.index(name.strip()) for name in names}))


def task_questions(path):
    task = file_stem(path)
    rows = read_jsonl(path, ("question",))
    if all(not record.get("options") for _, record in rows):
        logger.warning("agieval: %s has no options (a cloze task), skipped", path)
        return []
    questions = []
    for number, record in rows:
        options = record.get("options")
        if not isinstance(options, list) or len(options) < 2 or len(options) > 26:
            raise DataError(f"{path}: line {number}: options: expected a list of 2 to 26 choices, got {options!r}")
        letters = tuple(string.ascii_uppercase[:len(options)])
        chinese = is_chinese(task, record)
        answer = right_letters(record, letters, path, number)
        questions.append(ChoiceQuestion(task, FewShotPrompt(prompt_text(record, chinese)),
                                        tuple(f" {option}" for option in options),
                                        answer[0] if len(answer) == 1 else answer, letters))
    return questions


def load_questions(data_path):
    questions = []
    for path in jsonl_files(data_path, (), "AGIEval", LAYOUT):
        questions += task_questions(path)
    if not questions:
        raise DataError(f"eval_data_path: {data_path}: no multiple-choice AGIEval rows (every file is a cloze task)")
    return questions


def evaluate(run, questions):
    return run.choice_task(questions, "tasks", normalized=True)
