"""BIG-Bench Hard: 23 hard BIG-Bench tasks, greedy generation, exact match of the extracted answer.

Layout (suzgunmirac/BIG-Bench-Hard): bbh/<task>.json holding {"examples": [{"input", "target"}, ...]}, and
optionally cot-prompts/<task>.txt, the task's few-shot prefix (chain of thought in the official files), found
beside the task files or beside their folder. --eval_data_path may name the repository root or the bbh folder.
Without a prefix a task is asked zero-shot.
"""
import os
import re

from mindformers.evaluation.accuracy import accuracy_tables
from mindformers.evaluation.data_files import check_keys, files_in, layout_error, read_json
from mindformers.evaluation.prompts import FewShotPrompt
from mindformers.tools.errors import DataError

DEFAULT_MAX_NEW_TOKENS = 32
LAYOUT = "<task>.json files holding {examples: [{input, target}]} (optionally cot-prompts/<task>.txt)"
STOP_STRINGS = ("\n\n", "Q:")
COT_CUE = "Let's think step by step."
_ANSWER_IS = re.compile(r"the answer is", re.IGNORECASE)


def task_files(data_path):
    for folder in (os.path.join(data_path, "bbh"), data_path):
        found = files_in(folder, "*.json")
        if found:
            return folder, found
    raise layout_error("BBH", data_path, LAYOUT)


def read_prefix(folder, task):
    """The task's few-shot prefix, without the canary header the official files put above a '-----' line."""
    for prompts in (os.path.join(folder, "cot-prompts"), os.path.join(os.path.dirname(folder), "cot-prompts")):
        path = os.path.join(prompts, f"{task}.txt")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as stream:
                text = stream.read()
            parts = re.split(r"^-----\s*$", text, maxsplit=1, flags=re.MULTILINE)
            return parts[-1].strip() + "\n\n"
    return ""


def task_prompt(prefix, question):
    """The prefix's style decides the query's: a chain-of-thought prefix gets "A: Let's think step by step."."""
    answer_start = f"A: {COT_CUE}" if COT_CUE in prefix else "A:"
    return FewShotPrompt(f"Q: {question}\n{answer_start}", header=prefix)


def extract_answer(text):
    """What follows the last "the answer is" (else the whole text): its first line, without the closing period."""
    markers = list(_ANSWER_IS.finditer(text))
    answer = text[markers[-1].end():] if markers else text
    answer = answer.lstrip(" :").strip()
    answer = answer.split("\n", 1)[0].strip()
    return answer[:-1].rstrip() if answer.endswith(".") else answer


def task_examples(path):
    data = read_json(path)
    check_keys(data, ("examples",), path)
    if not isinstance(data["examples"], list):
        raise DataError(f"{path}: examples: expected a list of {{input, target}} objects")
    for number, example in enumerate(data["examples"], 1):
        check_keys(example, ("input", "target"), f"{path}: examples[{number - 1}]")
    return data["examples"]


def load_questions(data_path):
    """(task, prompt, target) per example."""
    folder, paths = task_files(data_path)
    questions = []
    for path in paths:
        task = os.path.basename(path)[:-len(".json")]
        prefix = read_prefix(folder, task)
        questions += [(task, task_prompt(prefix, example["input"]), str(example["target"]).strip())
                      for example in task_examples(path)]
    return questions


def evaluate(run, questions):
    texts = run.generate([prompt for _, prompt, _ in questions], STOP_STRINGS)
    records = []
    for (group, _, target), text in zip(questions, texts):
        answer = extract_answer(text)
        records.append({"group": group, "output": text, "predicted": answer, "answer": target,
                        "correct": answer == target})
    return run.summary(accuracy_tables(records, "tasks")), records
