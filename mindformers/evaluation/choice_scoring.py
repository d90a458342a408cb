"""Multiple-choice scoring as lm-evaluation-harness does it: each choice is a continuation of the prompt, scored by
the sum of its tokens' log-probabilities; the answer is the choice with the highest sum.

A choice is tokenized as lm-eval's causal models do (spaces that end the prompt move to the choice; prompt + choice
is encoded whole and split after the prompt's own tokens), and the model reads (prompt + choice)[:-1], cut from the
left to seq_length. Requests with the same input share one row: the one-token choices of a question (" A".." D")
are all read from the prompt's last column. Rows run in left-padded batches with an attention mask; only the last
columns' logits leave the model."""
import dataclasses

import numpy as np
from mindspore import Tensor, nn

from mindformers.evaluation.batching import batches_longest_first
from mindformers.evaluation.last_columns_logits import LastColumnsLogits

# Batches are padded to a multiple of this many columns, so graph mode compiles a few shapes, not one per length.
LENGTH_BUCKET = 64
# Read columns are rounded up to a multiple of this (beyond one), for the same reason.
READ_BUCKET = 8


@dataclasses.dataclass(frozen=True)
class ChoiceQuestion:
    group: str       # the subject or task the question belongs to
    prompt: object   # a FewShotPrompt (lm-eval's context)
    choices: tuple   # each choice as it follows the prompt, with lm-eval's target delimiter (" A", " no", ...)
    answer: object   # the right choice(s): an index, or a tuple of indices when several are right
    labels: tuple    # how choices are reported ("A", "B", ...)

    @property
    def right(self):
        return self.answer if isinstance(self.answer, tuple) else (self.answer,)


def encode_pair(tokenizer, context, continuation):
    """(context ids, continuation ids) the way lm-eval's causal models split them."""
    stripped = context.rstrip()
    continuation = context[len(stripped):] + continuation
    whole = tokenizer.encode(stripped + continuation)
    context_ids = tokenizer.encode(stripped)
    return context_ids, whole[len(context_ids):]


@dataclasses.dataclass
class ScoringRow:
    ids: list                                   # the model's input
    reads: list = dataclasses.field(default_factory=list)  # (question, choice, continuation ids) read from it


def scoring_rows(tokenizer, questions, seq_length):
    """The rows that score every choice of every question; returns (rows, how many questions had an input cut
    to fit)."""
    rows, by_input, truncated = [], {}, 0
    for q, question in enumerate(questions):
        context = question.prompt.text()
        cut = False
        for c, choice in enumerate(question.choices):
            context_ids, continuation = encode_pair(tokenizer, context, choice)
            whole = context_ids + continuation
            cut = cut or len(whole) > seq_length + 1
            key = tuple(whole[-(seq_length + 1):][:-1])
            if key not in by_input:
                by_input[key] = ScoringRow(list(key))
                rows.append(by_input[key])
            by_input[key].reads.append((q, c, continuation))
        truncated += cut
    return rows, truncated


def read_columns(rows):
    longest = max(len(continuation) for row in rows for _, _, continuation in row.reads)
    return 1 if longest == 1 else -(-longest // READ_BUCKET) * READ_BUCKET


def last_columns_logits(model, input_ids, attention_mask, columns):
    """(batch, columns, vocab) float32 logits of the last `columns` positions of a left-padded batch, from a
    causal LM (`model.model` the decoder stack, `model.logits` the head). A MindSpore Cell runs
    through cells kept on the model (graph mode reuses their compiled graphs); another object of that layout is
    called on NumPy arrays."""
    if not isinstance(model, nn.Cell):
        hidden = model.model(input_ids, attention_mask)
        logits = np.asarray(model.logits(hidden[:, -columns:]), np.float32)
        return logits.reshape(input_ids.shape[0], columns, -1)
    cells = model.__dict__.get("_last_columns_cells")
    if cells is None:
        cells = {}
        # Kept past Cell.__setattr__: as registered sub-cells they would rename the model's parameters.
        object.__setattr__(model, "_last_columns_cells", cells)
    if columns not in cells:
        cells[columns] = LastColumnsLogits(model, columns)
    return cells[columns](Tensor(input_ids), Tensor(attention_mask)).asnumpy()


def log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def left_padded(rows, pad_token_id, max_columns, min_columns=1):
    """(ids, mask) int32 arrays: rows right-aligned in a grid of a bucketed width (at most max_columns, and at
    least min_columns so the columns read exist)."""
    longest = max(len(row) for row in rows)
    width = min(-(-longest // LENGTH_BUCKET) * LENGTH_BUCKET, max(max_columns, longest))
    width = max(width, min_columns)
    ids = np.full((len(rows), width), pad_token_id, np.int32)
    mask = np.zeros((len(rows), width), np.int32)
    for r, row in enumerate(rows):
        ids[r, width - len(row):] = row
        mask[r, width - len(row):] = 1
    return ids, mask


def score_rows(model, rows, num_questions, batch_size, progress):
    """The log-likelihood of every choice: a list per question."""
    config = getattr(model, "config", None)
    pad = getattr(config, "pad_token_id", 0) or 0
    max_columns = getattr(config, "seq_length", 0) or 0
    scores = [{} for _ in range(num_questions)]
    for indices, batch in batches_longest_first([row.ids for row in rows], batch_size):
        chosen = [rows[i] for i in indices]
        columns = read_columns(chosen)
        ids, mask = left_padded(batch, pad, max_columns, columns)
        logprobs = log_softmax(last_columns_logits(model, ids, mask, columns))
        for r, row in enumerate(chosen):
            for question, choice, continuation in row.reads:
                positions = np.arange(columns - len(continuation), columns)
                scores[question][choice] = float(logprobs[r, positions, continuation].sum())
        progress.update(len(indices))
    return [[s[c] for c in range(len(s))] for s in scores]
