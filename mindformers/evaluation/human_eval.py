"""HumanEval: 164 Python functions to complete from their signature and docstring. Each greedy completion (cut at
the next top-level def/class/if/print) runs with the problem's unit tests in a sandboxed child process;
pass@1 is the share that pass.

Layout (openai/human-eval): HumanEval.jsonl or HumanEval.jsonl.gz rows {task_id, prompt, canonical_solution, test,
entry_point}, or the file itself.
"""
from mindformers.evaluation.accuracy import accuracy_tables
from mindformers.evaluation.data_files import read_jsonl
from mindformers.evaluation.jsonl_sources import file_stem, jsonl_files
from mindformers.evaluation.prompts import FewShotPrompt
from mindformers.evaluation.runner import progress_bar
from mindformers.evaluation.sandbox import run_untrusted

DEFAULT_MAX_NEW_TOKENS = 200
LAYOUT = "HumanEval.jsonl or HumanEval.jsonl.gz rows {task_id, prompt, canonical_solution, test, entry_point}"
STOP_STRINGS = ("\ndef", "\nclass", "\nif", "\nprint")
REQUIRED = ("task_id", "prompt", "test", "entry_point")


def test_program(problem, completion):
    """The prompt, the completion, the problem's tests and the call that runs them."""
    return f"{problem['prompt']}{completion}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


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
    completions = run.generate([FewShotPrompt(problem["prompt"]) for _, problem in problems], STOP_STRINGS)
    results = execute_all([test_program(problem, completion)
                           for (_, problem), completion in zip(problems, completions)], "human_eval tests")
    records = [{"group": group, "task_id": problem["task_id"], "completion": completion, "status": result.status,
                "detail": result.detail, "correct": result.passed}
               for (group, problem), completion, result in zip(problems, completions, results)]
    table = accuracy_tables(records, "files")
    return run.summary(dict(table, **{"pass@1": table["accuracy"]})), records
