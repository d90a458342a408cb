"""The block of a global tensor one rank holds, and copying between blocks of different splits.

A rank holds either the whole tensor or part `index` of `parts` equal slices along one dimension, i.e.
np.split(full, parts, axis=split_dim)[index]. Resharding copies, for every source block that overlaps the block
a target rank needs, the overlap from one to the other; the split dimensions and part counts of source and target
are independent.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class Piece:
    shape: Tuple[int, ...]  # the global tensor's shape
    split_dim: Optional[int] = None
    parts: int = 1
    index: int = 0

    @property
    def whole(self):
        return self.split_dim is None or self.parts == 1

    @property
    def local_shape(self):
        shape = list(self.shape)
        if not self.whole:
            shape[self.split_dim] //= self.parts
        return tuple(shape)

    def bounds(self):
        """(start, stop) per dimension of the global tensor."""
        bounds = [(0, size) for size in self.shape]
        if not self.whole:
            size = self.shape[self.split_dim] // self.parts
            bounds[self.split_dim] = (self.index * size, (self.index + 1) * size)
        return bounds

    def divides(self):
        return self.whole or (0 <= self.split_dim < len(self.shape) and self.shape[self.split_dim] % self.parts == 0)


def overlap(first, second):
    """The common bounds of two pieces of one tensor, or None when they share no element."""
    common = [(max(a0, b0), min(a1, b1)) for (a0, a1), (b0, b1) in zip(first.bounds(), second.bounds())]
    return None if any(start >= stop for start, stop in common) else common


def _relative(bounds, piece):
    return tuple(slice(start - origin, stop - origin) for (start, stop), (origin, _) in zip(bounds, piece.bounds()))


def copy_overlap(target, target_piece, source, source_piece):
    """Copy what `source` (holding source_piece) shares with `target` (holding target_piece); returns the number
    of elements copied."""
    common = overlap(target_piece, source_piece)
    if common is None:
        return 0
    target[_relative(common, target_piece)] = source[_relative(common, source_piece)]
    return int(np.prod([stop - start for start, stop in common], dtype=np.int64))


def cut(full, piece):
    """The block `piece` names, out of the whole tensor."""
    return full[_relative(piece.bounds(), Piece(tuple(full.shape)))]
