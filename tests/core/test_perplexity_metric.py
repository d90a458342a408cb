"""PerplexityMetric: one mean over every counted token of the eval set (not a mean of batch means), PPL = exp."""
import math

import numpy as np
import pytest

from mindformers.core.metric import PerplexityMetric
from mindformers.tools.errors import DataError


def log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def batches(seed=0):
    """Two batches of random logits whose masks count 11 and 2 tokens; ignored labels are -100."""
    rng = np.random.default_rng(seed)
    out = []
    for counted in ([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]], [[0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 1, 0]]):
        mask = np.array(counted, bool)
        logits = rng.normal(0, 3, (2, 6, 7)).astype(np.float32)
        labels = np.where(mask, rng.integers(0, 7, (2, 6)), -100).astype(np.int32)
        out.append((logits, labels, mask))
    return out


def reference_nll(items):
    """(sum of NLL over counted tokens, count) in float64."""
    total, count = 0.0, 0
    for logits, labels, mask in items:
        picked = np.take_along_axis(log_softmax(logits.astype(np.float64)), np.maximum(labels, 0)[..., None], -1)
        total += float(-(picked[..., 0] * mask).sum())
        count += int(mask.sum())
    return total, count


def test_token_weighted_mean_over_batches():
    items = batches()
    metric = PerplexityMetric()
    for logits, labels, mask in items:
        metric.update(logits, labels, mask)
    total, count = reference_nll(items)
    result = metric.eval()
    assert result["loss"] == pytest.approx(total / count, rel=1e-6)
    assert result["PPL"] == pytest.approx(math.exp(total / count), rel=1e-6)
    # the case that tells them apart: the mean of per-batch means is another number
    batch_means = [reference_nll([item])[0] / item[2].sum() for item in items]
    assert abs(np.mean(batch_means) - total / count) > 1e-2


def test_clear_and_empty_batches():
    items = batches(seed=1)
    metric = PerplexityMetric()
    metric.update(*items[0])
    metric.clear()
    logits, labels, _ = items[1]
    metric.update(logits, labels, np.zeros_like(labels, bool))  # a batch of filler rows adds nothing
    with pytest.raises(DataError, match="no target token"):
        metric.eval()
    metric.update(*items[1])
    assert metric.eval()["loss"] == pytest.approx(reference_nll([items[1]])[0] / 2, rel=1e-6)


def test_update_arity():
    with pytest.raises(ValueError, match="logits, labels, input_mask"):
        PerplexityMetric().update(np.zeros((1, 2, 3), np.float32), np.zeros((1, 2), np.int32))
