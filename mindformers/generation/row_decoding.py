"""The decode loop of greedy and sampled generation: several prompts stepped together, each with its own options.

Rows share one DecodingState (a left-padded grid and its KV cache) and advance one column per step. Each row picks
its next token under its own GenerationConfig and random generator, ends on its own eos, stop strings or token
budget (or when cancelled from another thread), and may hand every new token to a callback as it comes.
generate() builds its rows with one shared config and generator; the server (mindformers.serve) batches requests
whose options differ.
"""
import numpy as np

from mindformers.generation.decoding_state import DecodingState
from mindformers.generation.logits_process import next_tokens
from mindformers.tools.errors import ConfigError

STOP, LENGTH, CANCELLED = "stop", "length", "cancelled"


def token_budget(prompt_length, config, seq_length):
    """New tokens a prompt may take: max_new_tokens, else up to max_decode_length, and never past seq_length."""
    if prompt_length >= seq_length:
        raise ConfigError(f"generate: a prompt of {prompt_length} tokens is too long for seq_length {seq_length} "
                          f"(model.model_config.seq_length); shorten it or raise seq_length")
    wanted = config.max_new_tokens or config.max_decode_length - prompt_length
    if wanted < 1:
        raise ConfigError(f"generate: max_decode_length {config.max_decode_length} leaves no room after a prompt of "
                          f"{prompt_length} tokens; raise it or set max_new_tokens")
    return min(wanted, seq_length - prompt_length)


def ends_with_stop(tokens, config, tokenizer):
    """Whether the text of `tokens` (the generated ones) now contains one of the config's stop strings."""
    if not config.stop_list:
        return False
    longest = max(len(s) for s in config.stop_list)
    text = tokenizer.decode(tokens[-(longest + 8):], skip_special_tokens=True)
    return any(s in text for s in config.stop_list)


class DecodingRow:
    """One prompt being continued. `rng` (a numpy Generator, needed when sampling) may be shared with other rows of
    the same config: they then draw in one call per step, in row order. `on_token(token)` sees each new token."""

    def __init__(self, prompt, budget, config, rng=None, on_token=None):
        self.prompt = [int(t) for t in prompt]
        self.budget = int(budget)
        self.config = config
        self.rng = rng
        self.on_token = on_token
        self.eos = frozenset(config.eos_ids)
        self.generated = []
        self.finish_reason = None  # STOP (eos or a stop string), LENGTH (budget spent) or CANCELLED

    @property
    def done(self):
        return self.finish_reason is not None

    def cancel(self):
        """Stop growing this row at the next step (safe to call from another thread)."""
        if self.finish_reason is None:
            self.finish_reason = CANCELLED

    def take(self, token, tokenizer):
        self.generated.append(token)
        if token in self.eos or ends_with_stop(self.generated, self.config, tokenizer):
            self.finish_reason = STOP
        elif len(self.generated) >= self.budget:
            self.finish_reason = LENGTH
        if self.on_token is not None:
            self.on_token(token)


def _sampling_groups(rows):
    """[(row indices, config, rng)]: rows sharing a config and a generator choose their tokens in one call."""
    groups = {}
    for index, row in enumerate(rows):
        groups.setdefault((id(row.config), id(row.rng)), (row.config, row.rng, []))[2].append(index)
    return [(np.array(indices), config, rng) for config, rng, indices in groups.values()]


def decode_rows(model, rows, tokenizer=None):
    """Step `rows` (DecodingRows) until every one is done; a row that is done gets padding and stops growing. The
    grid's layout options (use_past, length_bucket, pad, transposed weights) are the first row's."""
    first = rows[0].config
    state = DecodingState(model, [row.prompt for row in rows], max(row.budget for row in rows), first)
    groups = _sampling_groups(rows)
    tokens = np.full(len(rows), first.pad_token_id, np.int64)
    logits = state.first_logits()
    column = state.prompt_columns
    while True:
        for indices, config, rng in groups:
            seen = ([rows[i].prompt + rows[i].generated for i in indices]
                    if config.repetition_penalty != 1.0 else None)
            tokens[indices] = next_tokens(logits[indices], seen, config, rng)
        for row, token in zip(rows, tokens):
            if not row.done:
                row.take(int(token), tokenizer)
        done = np.array([row.done for row in rows])
        if done.all():
            return
        logits = state.next_logits(np.where(done, first.pad_token_id, tokens), column)
        column += 1
