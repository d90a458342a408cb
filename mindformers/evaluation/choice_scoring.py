"""Multiple-choice scoring: each question's answer is the choice whose first token the model rates highest at the
answer position. One forward pass per batch, left padded with an attention mask, reading only the last column."""
import dataclasses

import numpy as np
from mindspore import Tensor, nn

from mindformers.evaluation.batching import batches_longest_first
from mindformers.evaluation.last_column_logits import LastColumnLogits
from mindformers.tools.errors import DataError

# Batches are padded to a multiple of this many columns, so graph mode compiles a few shapes, not one per length.
LENGTH_BUCKET = 64


@dataclasses.dataclass(frozen=True)
class ChoiceQuestion:
    group: str       # the subject or task the question belongs to
    prompt: object   # a FewShotPrompt ending with the answer cue ("Answer:")
    choices: tuple   # the text of each choice as it would follow the prompt (" A", " B", ...)
    answer: object   # the right choice(s): an index, or a tuple of indices when several are right
    labels: tuple    # how choices are reported ("A", "B", ...)


def choice_token_ids(tokenizer, cue, choices, cache):
    """The token each choice starts with when it follows `cue`, the last line of the prompt. Tokenizing the choice
    after its cue matters: sentencepiece writes 'A' after ':' differently from 'A' at the start of a text.
    `cache` (a dict) keeps the answers, as every question of a task asks the same few."""
    key = (cue, tuple(choices))
    if key not in cache:
        source = getattr(tokenizer, "vocab_file", None) or "the tokenizer"
        before = tokenizer.encode(cue, add_special_tokens=False)
        ids = []
        for choice in choices:
            after = tokenizer.encode(cue + choice, add_special_tokens=False)
            common = 0
            while common < min(len(before), len(after)) and before[common] == after[common]:
                common += 1
            if common == len(after):
                raise DataError(f"{source}: choice {choice!r} adds no token after {cue!r}")
            ids.append(after[common])
        if len(set(ids)) != len(ids):
            raise DataError(f"{source}: choices {list(choices)} after {cue!r} start with the same token ({ids}); "
                            f"multiple-choice scoring needs a distinct first token per choice")
        cache[key] = ids
    return cache[key]


def answer_cue(prompt_text):
    return prompt_text.rsplit("\n", 1)[-1]


def next_token_logits(model, input_ids, attention_mask):
    """(batch, vocab) float32 logits for the token after each row of a left-padded batch, from a
    causal LM (`model.model` is the decoder stack, `model.logits` the head). A MindSpore Cell runs through one
    cell kept on the model (graph mode reuses its compiled graphs); another object of that layout is called on
    NumPy arrays."""
    if not isinstance(model, nn.Cell):
        hidden = model.model(input_ids, attention_mask)
        return np.asarray(model.logits(hidden[:, -1:]), np.float32).reshape(input_ids.shape[0], -1)
    cell = _last_column_cell(model)
    return cell(Tensor(input_ids), Tensor(attention_mask)).asnumpy()


def _last_column_cell(model):
    cell = model.__dict__.get("_next_token_logits_cell")
    if cell is None:
        cell = LastColumnLogits(model)
        # Kept past Cell.__setattr__: as a registered sub-cell it would rename the model's parameters.
        object.__setattr__(model, "_next_token_logits_cell", cell)
    return cell


def left_padded(rows, pad_token_id, max_columns):
    """(ids, mask) int32 arrays: rows right-aligned in a grid of a bucketed width (at most max_columns)."""
    longest = max(len(row) for row in rows)
    width = min(-(-longest // LENGTH_BUCKET) * LENGTH_BUCKET, max(max_columns, longest))
    ids = np.full((len(rows), width), pad_token_id, np.int32)
    mask = np.zeros((len(rows), width), np.int32)
    for r, row in enumerate(rows):
        ids[r, width - len(row):] = row
        mask[r, width - len(row):] = 1
    return ids, mask


@dataclasses.dataclass(frozen=True)
class ChoiceOutcome:
    predicted: int          # index of the chosen choice
    choice_logits: tuple    # the logit of each choice's token


def score_questions(model, prompt_ids, choice_ids, batch_size, progress):
    """The ChoiceOutcome of each question. prompt_ids: token ids per question; choice_ids: the candidate tokens
    per question."""
    config = getattr(model, "config", None)
    pad = getattr(config, "pad_token_id", 0) or 0
    max_columns = getattr(config, "seq_length", 0) or 0
    outcomes = [None] * len(prompt_ids)
    for indices, rows in batches_longest_first(prompt_ids, batch_size):
        logits = next_token_logits(model, *left_padded(rows, pad, max_columns))
        for row, index in enumerate(indices):
            scores = logits[row, choice_ids[index]]
            outcomes[index] = ChoiceOutcome(int(np.argmax(scores)), tuple(float(s) for s in scores))
        progress.update(len(indices))
    return outcomes
