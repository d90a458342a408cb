"""SQuAD 1.1 scoring on crafted cases, each worked out by hand from the official v1.1 definitions: normalise
(lowercase, drop ASCII punctuation, drop a/an/the, collapse whitespace), then EM = normalised strings equal and
F1 = bag-of-tokens overlap, both maxed over the gold answers, reported in percent."""
import pytest

from mindformers.core.metric import EmF1Metric
from mindformers.core.metric.squad_scoring import best_over_golds, exact_match, normalize_answer, token_f1
from mindformers.tools.errors import DataError

# (prediction, gold answers, EM, F1)
CASES = [
    ("The Eiffel Tower!", ["eiffel tower"], 1.0, 1.0),                 # case, article, punctuation
    ("  Paris\n\tFrance ", ["paris france"], 1.0, 1.0),               # whitespace collapses
    ("U.S.A.", ["USA"], 1.0, 1.0),                                    # punctuation inside a word goes too
    ("Banana", ["banana."], 1.0, 1.0),                                # 'a' inside a word is not an article
    ("state-of-the-art", ["state of the art"], 0.0, 0.0),             # 'stateoftheart' vs 'state of art'
    ("\u00abParis\u00bb", ["Paris"], 0.0, 0.0),                       # only ASCII punctuation is removed
    ("", ["Denver Broncos"], 0.0, 0.0),                               # empty prediction
    ("The.", ["a"], 1.0, 0.0),                                        # both normalise to '': EM 1, F1 0 (v1.1)
    ("new york new york", ["new york city"], 0.0, 4 / 7),             # repeats count once each: P 2/4, R 2/3
    ("the Broncos team", ["Denver Broncos", "Broncos"], 0.0, 2 / 3),  # best gold: P 1/2, R 1 -> 2/3
    ("Denver Broncos", ["Broncos", "The Denver Broncos", "Denver"], 1.0, 1.0),  # several golds, one exact
    ("Santa Clara, California", ["Levi's Stadium", "Santa Clara"], 0.0, 0.8),   # P 2/3, R 1 -> 0.8
]


def test_normalisation_steps():
    assert normalize_answer("An  Apple a DAY, the end.") == "apple day end"
    assert normalize_answer("theatre another a.n") == "theatre another"  # 'a.n' -> 'an', an article
    assert normalize_answer("") == ""


@pytest.mark.parametrize("prediction, golds, em, f1", CASES)
def test_each_case(prediction, golds, em, f1):
    assert best_over_golds(exact_match, prediction, golds) == em
    assert best_over_golds(token_f1, prediction, golds) == pytest.approx(f1, abs=1e-12)


def test_metric_averages_in_percent_and_clears():
    metric = EmF1Metric()
    metric.update([case[0] for case in CASES[:5]], [case[1] for case in CASES[:5]])
    metric.update([case[0] for case in CASES[5:]], [case[1] for case in CASES[5:]])
    result = metric.eval()
    assert result["total_count"] == len(CASES)
    assert result["Em"] == pytest.approx(100 * sum(case[2] for case in CASES) / len(CASES))
    assert result["F1"] == pytest.approx(100 * sum(case[3] for case in CASES) / len(CASES))
    metric.update("Denver", "denver")  # a single string pair is one question
    assert metric.eval()["total_count"] == len(CASES) + 1
    metric.clear()
    metric.update(["x"], [["x", "y"]])
    assert metric.eval() == {"F1": 100.0, "Em": 100.0, "total_count": 1}


def test_metric_input_errors():
    metric = EmF1Metric()
    with pytest.raises(DataError, match="no question"):
        metric.eval()
    with pytest.raises(ValueError, match="2 predictions for 1 questions"):
        metric.update(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="at least one gold"):
        metric.update(["a"], [[]])
