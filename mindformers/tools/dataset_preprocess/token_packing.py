"""Packing a token stream into fixed rows: no padding, documents run across row boundaries."""
import numpy as np


class TokenPacker:
    """Feed token arrays in order; get back full rows of `row_length` tokens. What is left at the end
    (fewer than row_length tokens) is the tail that does not make a row."""

    def __init__(self, row_length):
        self.row_length = row_length
        self.pending = []
        self.pending_size = 0

    def add(self, tokens):
        """Return the rows completed by `tokens` as an int32 array (rows, row_length), maybe with 0 rows."""
        tokens = np.asarray(tokens, dtype=np.int32)
        self.pending.append(tokens)
        self.pending_size += tokens.size
        if self.pending_size < self.row_length:
            return np.empty((0, self.row_length), dtype=np.int32)
        flat = np.concatenate(self.pending)
        count = flat.size // self.row_length
        rows = flat[:count * self.row_length].reshape(count, self.row_length)
        rest = flat[count * self.row_length:]
        self.pending, self.pending_size = [rest], rest.size
        return rows

    @property
    def tail(self):
        """Tokens that did not fill a row (dropped when the stream ends)."""
        return self.pending_size
