"""GSM8K: grade-school word problems, asked as lm-evaluation-harness's gsm8k task asks them: five worked examples
from the train split, "Question: ...\\nAnswer:", greedy generation until "Question:", and two verdicts on the
answer — strict-match (the number after "####", the reported accuracy) and flexible-extract (the last number of
the output) — each compared with the reference after "####" as lm-eval's exact_match compares them.

Layout (openai/grade-school-math): JSON Lines rows {"question", "answer": "...reasoning...\\n#### 42"} in
test.jsonl (or every *.jsonl of the folder but train.jsonl, or the file itself); the shots come from train.jsonl
beside it. lm-eval draws each question's five shots at random from the train split, with one random.Random(1234)
drawing in question order; the same draws are made here, so the prompts are the same.
"""
import logging
import os
import random
import re

from mindformers.evaluation.accuracy import accuracy_tables
from mindformers.evaluation.data_files import read_jsonl
from mindformers.evaluation.jsonl_sources import file_stem, jsonl_files
from mindformers.evaluation.prompts import FewShotPrompt
from mindformers.tools.errors import DataError

logger = logging.getLogger("mindformers")

DEFAULT_MAX_NEW_TOKENS = 256  # lm-eval's max_gen_toks
LAYOUT = "test.jsonl (or *.jsonl) rows {question, answer: '... #### <number>'}, and train.jsonl for the shots"
STOP_STRINGS = ("Question:", "</s>", "<|im_end|>")
SHOTS = 5
SHOT_SEED = 1234  # lm-eval's fewshot_random_seed
STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
# exact_match's regexes_to_ignore, applied in order to the prediction and the reference, then lower case.
IGNORED = (",", r"\$", r"(?s).*#### ", r"\.$")
INVALID = "[invalid]"


def query_text(record):
    return f"Question: {record['question']}\nAnswer:"


def shot_text(record):
    return f"{query_text(record)} {record['answer']}\n\n"


def extract(pattern, text, last=False):
    """lm-eval's regex filter: the first (or last) match, its first non-empty group, stripped; else [invalid]."""
    matches = pattern.findall(text)
    if not matches:
        return INVALID
    match = matches[-1 if last else 0]
    if isinstance(match, tuple):
        match = next((group for group in match if group), INVALID)
    return match.strip()


def normalized(text):
    for pattern in IGNORED:
        text = re.sub(pattern, "", text)
    return text.lower()


def check_reference(record, path, number):
    if "####" not in str(record["answer"]):
        raise DataError(f"{path}: line {number}: answer: expected text ending in '#### <number>', "
                        f"got {str(record['answer'])[-40:]!r}")


def train_file(test_path):
    path = os.path.join(os.path.dirname(os.path.abspath(test_path)), "train.jsonl")
    return path if os.path.isfile(path) else None


def load_questions(data_path):
    """(group, prompt, reference answer text) per question."""
    paths = [p for p in jsonl_files(data_path, ("test.jsonl",), "GSM8K", LAYOUT)
             if os.path.basename(p) != "train.jsonl" or os.path.isfile(data_path)]
    if not paths:
        raise DataError(f"eval_data_path: {data_path}: only train.jsonl found (expected {LAYOUT})")
    shots_path = train_file(paths[0])
    pool = [record for _, record in read_jsonl(shots_path, ("question", "answer"))] if shots_path else []
    if len(pool) < SHOTS:
        logger.warning("gsm8k: %s has %d worked examples, fewer than %d: asked zero-shot",
                       shots_path or "no train.jsonl", len(pool), SHOTS)
    draw = random.Random(SHOT_SEED)
    questions = []
    for path in paths:
        for number, record in read_jsonl(path, ("question", "answer")):
            check_reference(record, path, number)
            shots = tuple(shot_text(shot) for shot in draw.sample(pool, SHOTS)) if len(pool) >= SHOTS else ()
            questions.append((file_stem(path), FewShotPrompt(query_text(record), shots=shots), str(record["answer"])))
    return questions


def evaluate(run, questions):
    texts = run.generate([prompt for _, prompt, _ in questions], STOP_STRINGS)
    records = []
    for (group, _, reference), text in zip(questions, texts):
        strict, flexible = extract(STRICT, text), extract(FLEXIBLE, text, last=True)
        gold = normalized(reference)
        records.append({"group": group, "output": text, "predicted": strict, "predicted_flexible": flexible,
                        "answer": gold, "correct": normalized(strict) == gold,
                        "correct_flexible": normalized(flexible) == gold})
    table = accuracy_tables(records, "files")
    flexible = accuracy_tables([dict(r, correct=r["correct_flexible"]) for r in records], "files")
    table["flexible_extract"] = {key: flexible[key] for key in ("accuracy", "correct", "total")}
    return run.summary(table), records
