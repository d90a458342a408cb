"""SQuAD 1.1 answer scoring: the official normalisation, exact match and token F1, best over the gold answers."""
import collections
import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text):
    """Lowercase, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace (in that order)."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction, gold):
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction, gold):
    """Harmonic mean of precision and recall of the normalised tokens, counting repeats (a bag of words)."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    shared = sum((collections.Counter(predicted) & collections.Counter(expected)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(predicted), shared / len(expected)
    return 2 * precision * recall / (precision + recall)


def best_over_golds(score, prediction, golds):
    """A question may have several acceptable answers: the prediction gets its best score against any of them."""
    golds = [golds] if isinstance(golds, str) else list(golds)
    if not golds:
        raise ValueError("a question needs at least one gold answer")
    return max(score(prediction, gold) for gold in golds)
