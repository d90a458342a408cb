"""BIG-Bench Hard: 27 hard BIG-Bench tasks, asked as lm-evaluation-harness's bbh (bbh_cot_fewshot) asks them: the
task's description and its three chain-of-thought examples, then "Q: ...\\nA: Let's think step by step.\\n";
greedy generation until "Q" or a blank line; the answer is what follows the first "the answer is " up to the
line's last character (its period), and must equal the target exactly.

Layout (suzgunmirac/BIG-Bench-Hard): bbh/<task>.json holding {"examples": [{"input", "target"}, ...]} and
cot-prompts/<task>.txt, the task's description and worked examples under a canary header and a '-----' line,
found beside the task files or beside their folder. --eval_data_path may name the repository root or the bbh
folder.
"""
import os
import re

from mindformers.evaluation.accuracy import accuracy_tables
from mindformers.evaluation.data_files import check_keys, files_in, layout_error, read_json
from mindformers.evaluation.prompts import FewShotPrompt
from mindformers.tools.errors import DataError

DEFAULT_MAX_NEW_TOKENS = 1024  # lm-eval's max_gen_toks for bbh
LAYOUT = "<task>.json files holding {examples: [{input, target}]} and cot-prompts/<task>.txt"
STOP_STRINGS = ("</s>", "Q", "\n\n")
SHOTS = 3
QUERY = "Q: {input}\nA: Let's think step by step.\n"
ANSWER = re.compile(r"(?<=the answer is )(.*)(?=.)")
INVALID = "[invalid]"


def task_files(data_path):
    for folder in (os.path.join(data_path, "bbh"), data_path):
        found = files_in(folder, "*.json")
        if found:
            return folder, found
    raise layout_error("BBH", data_path, LAYOUT)


def cot_prompt_path(folder, task):
    for prompts in (os.path.join(folder, "cot-prompts"), os.path.join(os.path.dirname(folder), "cot-prompts")):
        path = os.path.join(prompts, f"{task}.txt")
        if os.path.isfile(path):
            return path
    raise DataError(f"eval_data_path: {folder}: no cot-prompts/{task}.txt beside the task files (expected "
                    f"{LAYOUT})")


def read_cot_prompt(path):
    """(description, worked examples) of a cot-prompts file: below its '-----' line, paragraphs separated by blank
    lines, the first being the description."""
    with open(path, encoding="utf-8") as stream:
        text = stream.read()
    body = re.split(r"^-----[ \t]*\n", text, maxsplit=1, flags=re.MULTILINE)[-1]
    description, *shots = [part.strip("\n") for part in body.split("\n\n") if part.strip()]
    if len(shots) < SHOTS:
        raise DataError(f"{path}: expected a description and {SHOTS} worked examples separated by blank lines, got "
                        f"{len(shots)} example(s)")
    return description, shots[:SHOTS]


def task_prompt(description, shots, question):
    return FewShotPrompt(QUERY.format(input=question), header=description + "\n\n",
                         shots=tuple(shot + "\n\n" for shot in shots))


def extract_answer(text):
    """lm-eval's get-answer filter: the first match of (?<=the answer is )(.*)(?=.), stripped; else [invalid]."""
    matches = ANSWER.findall(text)
    return matches[0].strip() if matches else INVALID


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
        examples = task_examples(path)
        description, shots = read_cot_prompt(cot_prompt_path(folder, task))
        questions += [(task, task_prompt(description, shots, example["input"]), str(example["target"]))
                      for example in examples]
    return questions


def evaluate(run, questions):
    texts = run.generate([prompt for _, prompt, _ in questions], STOP_STRINGS)
    records = []
    for (group, _, target), text in zip(questions, texts):
        answer = extract_answer(text)
        records.append({"group": group, "output": text, "predicted": answer, "answer": target,
                        "correct": answer == target})
    return run.summary(accuracy_tables(records, "tasks")), records
