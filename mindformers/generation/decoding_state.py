"""The device side of one generate call: a left-padded batch in a static (batch, L) token grid, its KV cache,
and the masks and positions each step needs.

Rows are left padded to P prompt columns, so every row writes its next token into the same column; positions
count from each row's first real token, so a row decodes exactly as it would alone. With use_past the prompt
runs once (prefill) and each new token runs alone against the cache; without it, every step reruns the whole
grid (right-padded to L, so shapes stay static) and reads the logits of the current column.
"""
import numpy as np
from mindspore import Tensor, mutable, ops

from mindformers.generation.decoding_cells import DecodeStep, PrefillStep


def round_up(value, multiple):
    return -(-value // multiple) * multiple


def decoding_cells(model):
    """The model's (PrefillStep, DecodeStep), built once: graph mode then keeps their compiled graphs."""
    cells = model.__dict__.get("_generation_cells")
    if cells is None:
        cells = (PrefillStep(model), DecodeStep(model))
        # Set past Cell.__setattr__ so the steps are not registered as sub-cells (that would rename parameters).
        object.__setattr__(model, "_generation_cells", cells)
    return cells


class DecodingState:
    def __init__(self, model, rows, new_columns, use_past, pad_token_id, bucket):
        config = model.config
        self.prefill_cell, self.decode_cell = decoding_cells(model)
        self.use_past = use_past
        self.window = getattr(config, "sliding_window", None)
        batch = len(rows)
        self.prompt_columns = round_up(max(len(row) for row in rows), bucket)
        self.columns = round_up(self.prompt_columns + new_columns, bucket)
        self.ids = np.full((batch, self.columns), pad_token_id, np.int32)
        self.valid = np.zeros((batch, self.columns), bool)
        self.positions = np.zeros((batch, self.columns), np.int32)
        max_position = model.model.layers[0].attention.rotary.cos.shape[0] - 1
        for row, tokens in enumerate(rows):
            start = self.prompt_columns - len(tokens)
            self.ids[row, start:self.prompt_columns] = tokens
            self.valid[row, start:self.prompt_columns] = True
            # Columns past a row's own limit may exceed the rotary table; that row has finished by then.
            self.positions[row, start:] = np.minimum(np.arange(self.columns - start), max_position)
        self.caches = None

    def blocked(self, query_columns, key_columns):
        """(batch, 1, q, k) float32: 1 where a query column must not see a key column (future, padding, window)."""
        q = np.asarray(query_columns)[:, None]
        k = np.asarray(key_columns)[None, :]
        blocked = (k > q)[None] | ~self.valid[:, None, key_columns]
        if self.window:
            distance = self.positions[:, q[:, 0]][:, :, None] - self.positions[:, key_columns][:, None, :]
            blocked |= distance >= self.window
        return Tensor(blocked[:, None].astype(np.float32))

    def _full_pass(self, columns, select):
        cols = np.arange(columns)
        logits, caches = self.prefill_cell(Tensor(self.ids[:, :columns]), Tensor(self.positions[:, :columns]),
                                           self.blocked(cols, cols), Tensor(np.array([select], np.int32)))
        return logits, caches

    def first_logits(self):
        """Logits (batch, vocab) for the first new token, after running the prompt."""
        if not self.use_past:
            return self._full_pass(self.columns, self.prompt_columns - 1)[0].asnumpy()
        logits, caches = self._full_pass(self.prompt_columns, self.prompt_columns - 1)
        room = self.columns - self.prompt_columns
        self.caches = tuple(ops.concat((c, ops.zeros((c.shape[0], c.shape[1], room, c.shape[3]), c.dtype)), 2)
                            for c in caches)
        return logits.asnumpy()

    def next_logits(self, tokens, column):
        """Place `tokens` (batch,) at `column`; logits (batch, vocab) for the token after it.

        The caches go in as `mutable`: graph mode otherwise treats a tuple argument as a constant and compiles
        the decode step again for every new tuple (seconds per token instead of milliseconds)."""
        self.ids[:, column] = tokens
        self.valid[:, column] = True
        if not self.use_past:
            return self._full_pass(self.columns, column)[0].asnumpy()
        one_hot = np.zeros((1, 1, self.columns, 1), np.float32)
        one_hot[0, 0, column, 0] = 1.0
        logits, self.caches = self.decode_cell(
            Tensor(self.ids[:, column:column + 1]), Tensor(self.positions[:, column:column + 1]),
            self.blocked([column], np.arange(self.columns)), Tensor(one_hot), mutable(self.caches))
        return logits.asnumpy()

    def reorder(self, sources):
        """Beam search: row r continues from row sources[r] (its tokens, masks and cache)."""
        self.ids, self.valid, self.positions = self.ids[sources], self.valid[sources], self.positions[sources]
        if self.caches is not None:
            index = Tensor(np.asarray(sources, np.int32))
            self.caches = tuple(ops.gather(c, index, 0) for c in self.caches)
