"""Next-token choice on the host, in float32 numpy: repetition penalty, temperature, top-k, top-p, sampling.

Logits of one step are (batch, vocab); doing this in numpy keeps the compiled decode step free of options (one
graph serves greedy and every sampling setting) and makes a seeded numpy Generator the only source of randomness.
"""
import numpy as np


def apply_repetition_penalty(logits, seen, penalty):
    """CTRL's penalty on every token id a row has seen: positive scores divided by it, negative multiplied."""
    if penalty == 1.0:
        return logits
    logits = logits.copy()
    for row, ids in enumerate(seen):
        if len(ids):
            ids = np.unique(np.asarray(ids, np.int64))
            scores = logits[row, ids]
            logits[row, ids] = np.where(scores < 0, scores * penalty, scores / penalty)
    return logits


def top_k_filter(logits, top_k):
    """Scores below each row's k-th largest become -inf (ties at the k-th value are kept)."""
    if top_k <= 0 or top_k >= logits.shape[-1]:
        return logits
    kth = np.partition(logits, -top_k, axis=-1)[:, -top_k][:, None]
    return np.where(logits < kth, -np.inf, logits)


def softmax(logits):
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / np.sum(exp, axis=-1, keepdims=True)


def top_p_filter(logits, top_p):
    """Nucleus filter: keep the smallest set of most likely tokens whose probability reaches top_p (at least one)."""
    if top_p >= 1.0:
        return logits
    order = np.argsort(logits, axis=-1)  # ascending
    sorted_probs = np.take_along_axis(softmax(logits), order, axis=-1)
    cumulative = np.cumsum(sorted_probs, axis=-1)
    remove_sorted = cumulative <= 1.0 - top_p
    remove_sorted[:, -1] = False
    remove = np.zeros_like(remove_sorted)
    np.put_along_axis(remove, order, remove_sorted, axis=-1)
    return np.where(remove, -np.inf, logits)


def sample(logits, rng):
    """One token per row drawn from softmax(logits) with numpy Generator `rng`."""
    probs = softmax(logits.astype(np.float64))
    cumulative = np.cumsum(probs, axis=-1)
    draws = rng.random(logits.shape[0]) * cumulative[:, -1]
    tokens = np.array([np.searchsorted(cumulative[row], draws[row], side="right") for row in range(len(draws))])
    return np.minimum(tokens, logits.shape[-1] - 1)


def next_tokens(logits, seen, config, rng):
    """Greedy (argmax) or sampled next token ids (batch,) under the options of a GenerationConfig."""
    logits = apply_repetition_penalty(np.asarray(logits, np.float32), seen, config.repetition_penalty)
    if not config.do_sample:
        return np.argmax(logits, axis=-1)
    logits = logits / np.float32(config.temperature)
    logits = top_k_filter(logits, config.top_k)
    logits = top_p_filter(logits, config.top_p)
    return sample(logits, rng)


def log_softmax(logits):
    logits = np.asarray(logits, np.float32)
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
