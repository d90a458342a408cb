"""The host side of one generate call: a left-padded batch in a static (batch, L) token grid, and the compiled step
(with its KV cache) that runs it.

Rows are left padded to P prompt columns, so every row writes its next token into the same column. With use_past
the prompt runs first (prefill) and each new token then runs alone against the cache; without it, every step reruns
the whole grid (right-padded to L, so shapes stay static) and reads the logits of the current column. Per step the
host sends the new tokens and where they go: in PyNative their positions, mask and cache slots, in graph mode two
small index tensors the step derives those from (DecodingStep.inputs).

Memory follows the prompts, not seq_length. A compiled graph keeps memory in proportion to the tensors it computes
for as long as it lives (MindSpore's CPU kernels hold buffers per node), so a prefill of the whole grid at once would
keep (batch x P x layers)-sized buffers per prompt length: gigabytes at 30 layers, and four times as many at batch 4.
So a prompt longer than prefill_chunk_tokens / batch columns runs in chunks of that many columns, each attending
over the cache: one graph of about prefill_chunk_tokens tokens whatever the batch and the prompt length. The cache
holds the prompt and the new tokens only, and a kept step whose cache is up to LENGTH_SLACK times longer than needed
is reused rather than compiling another (batches sorted longest first then share a few steps).
"""
import time
from collections import OrderedDict

import numpy as np
import mindspore as ms

from mindformers.core.context.compile_cache import compile_cache_on
from mindformers.generation.decoding_cells import DecodingStep
from mindformers.generation.timing import compile_if_new, generation_times, layer_trace_seconds
from mindformers.generation.transposed_weights import wanted

# Compiled steps (each with its cache) kept per model, most recent last: one per (batch, length) bucket in use.
KEPT_STEPS = 4
# A kept step serves a grid of up to this many times fewer columns: a decode step's cost grows with the cache length,
# and this bounds how much of it a shorter grid pays.
LENGTH_SLACK = 2
# Graph mode: a prompt grid of at most this many tokens (batch x longest row) prefills through decode's graph.
DECODE_GRAPH_PREFILL_TOKENS = 16


def round_up(value, multiple):
    return -(-value // multiple) * multiple


def decoding_step(model, batch, length, transposed):
    """A DecodingStep of the model for `batch` rows with a cache of at least `length` columns: a kept one when its
    cache is at most LENGTH_SLACK times longer, else a new one (graph mode keeps each step's compiled graphs; they
    were compiled with or without the transposed weight copies, so that choice is part of the key)."""
    steps = model.__dict__.get("_decoding_steps")
    if steps is None:
        steps = OrderedDict()
        # Set past Cell.__setattr__ so the steps are not registered as sub-cells (that would rename parameters).
        object.__setattr__(model, "_decoding_steps", steps)
    fitting = [key for key in steps
               if key[0] == batch and key[2] == transposed and length <= key[1] <= LENGTH_SLACK * length]
    key = min(fitting, key=lambda k: k[1]) if fitting else (batch, length, transposed)
    if key not in steps:
        steps[key] = DecodingStep(model, batch, length)
        while len(steps) > KEPT_STEPS:
            steps.popitem(last=False)
    steps.move_to_end(key)
    return steps[key]


def prefill_columns(batch, longest, config, graph_mode=False):
    """Columns per prefill step: the whole prompt grid (its longest row rounded up to length_bucket) when it fits
    in prefill_chunk_tokens, else chunks of prefill_chunk_tokens / batch columns (at least one). In graph mode a grid
    of up to DECODE_GRAPH_PREFILL_TOKENS tokens runs one column per step, through decode's graph: compiling a prefill
    graph of its own costs seconds per layer, those few decode steps milliseconds."""
    if graph_mode and batch * longest <= DECODE_GRAPH_PREFILL_TOKENS:
        return 1
    return min(round_up(longest, config.length_bucket), max(1, config.prefill_chunk_tokens // batch))


class DecodingState:
    def __init__(self, model, rows, new_columns, config):
        """`rows` of prompt ids, room for `new_columns` tokens after the longest; `config` a GenerationConfig."""
        self.use_past = config.use_past
        batch, longest = len(rows), max(len(row) for row in rows)
        graph_prefill = self.use_past and ms.get_context("mode") == ms.GRAPH_MODE
        self.chunk = prefill_columns(batch, longest, config, graph_prefill)
        self.prompt_columns = round_up(longest, self.chunk)
        self.columns = round_up(self.prompt_columns + new_columns, config.length_bucket)
        self.step = decoding_step(model, batch, self.columns, wanted(config.transposed_weights))
        self.ids = np.full((batch, self.columns), config.pad_token_id, np.int32)
        self.first_columns = np.array([self.prompt_columns - len(row) for row in rows], np.int32)
        for row, tokens in enumerate(rows):
            self.ids[row, self.first_columns[row]:self.prompt_columns] = tokens
        self.times = generation_times(model)
        self.decodes = new_columns > 1

    def _inputs(self, ids, start, select):
        return self.step.inputs(ids, start, self.first_columns, select)

    def _run(self, ids, start, select, phase):
        """Logits of one step; its seconds (compilation apart) are added to the model's `phase` total."""
        inputs = self._inputs(ids, start, select)
        compile_if_new(self.step, inputs, self.times)
        began, traced = time.perf_counter(), layer_trace_seconds(self.step.lm)
        logits = self.step(*inputs).asnumpy()
        traced = layer_trace_seconds(self.step.lm) - traced
        self.times.compile += traced
        setattr(self.times, phase, getattr(self.times, phase) + time.perf_counter() - began - traced)
        return logits

    def first_logits(self):
        """Logits (batch, vocab) for the first new token, after running the prompt (in chunks of self.chunk
        columns)."""
        if not self.use_past:
            return self._run(self.ids, 0, self.prompt_columns - 1, "prefill")
        if self.decodes and compile_cache_on():
            # The compile cache finds graphs by the order they were compiled in: decode's graph is compiled with the
            # prefill's, whether or not a row then ends at its first token.
            compile_if_new(self.step, self._inputs(self._chunk(0), 0, self.chunk - 1), self.times)
            compile_if_new(self.step, self._inputs(self.ids[:, :1], self.prompt_columns, 0), self.times)
        for start in range(0, self.prompt_columns, self.chunk):
            logits = self._run(self._chunk(start), start, self.chunk - 1, "prefill")
        return logits

    def _chunk(self, start):
        return self.ids[:, start:start + self.chunk]

    def next_logits(self, tokens, column):
        """Place `tokens` (batch,) at `column`; logits (batch, vocab) for the token after it."""
        self.ids[:, column] = tokens
        self.times.decode_tokens += len(tokens)
        if not self.use_past:
            return self._run(self.ids, 0, column, "decode")
        return self._run(self.ids[:, column:column + 1], column, 0, "decode")

    def reorder(self, sources):
        """Beam search: row r continues from row sources[r] (its tokens, padding and cache)."""
        self.ids, self.first_columns = self.ids[sources], self.first_columns[sources]
        if self.use_past:
            self.step.cache.reorder(sources)
