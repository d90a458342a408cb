"""The block of a global tensor one rank holds, and copying between blocks of different splits.

A rank holds either the whole tensor or, for each split dimension, part `index` of `parts` equal slices along it:
np.split(full, parts, axis=dim)[index], dimension after dimension. Most weights split along at most one dimension
(over model_parallel); a mixture-of-experts weight may split along two (experts over expert_parallel, their
features over model_parallel). Resharding copies, for every source block that overlaps the block a target rank
needs, the overlap from one to the other; the splits of source and target are independent.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class Piece:
    shape: Optional[Tuple[int, ...]]  # the global tensor's shape (None: not known yet, see RankLayout.held)
    splits: Tuple[Tuple[int, int, int], ...] = ()  # (dim, parts, index) per split dimension, in dim order

    @classmethod
    def along(cls, shape, split_dim=None, parts=1, index=0):
        """Part `index` of `parts` along `split_dim` (the whole tensor when split_dim is None or parts is 1)."""
        return cls(shape, () if split_dim is None or parts == 1 else ((split_dim, parts, index),))

    @classmethod
    def split(cls, shape, splits):
        """A piece of `splits` [(dim, parts, index)], leaving out those of one part."""
        return cls(shape, tuple(sorted((int(d), int(p), int(i)) for d, p, i in splits if p > 1)))

    @property
    def whole(self):
        return not self.splits

    @property
    def layout(self):
        """((dim, parts), ...): how the tensor is cut, whichever part this is."""
        return tuple((dim, parts) for dim, parts, _ in self.splits)

    @property
    def indices(self):
        return tuple(index for _, _, index in self.splits)

    # The single split's terms (None, 1, 0 for a whole tensor; the first split of a piece split along several).
    @property
    def split_dim(self):
        return self.splits[0][0] if self.splits else None

    @property
    def parts(self):
        return self.splits[0][1] if self.splits else 1

    @property
    def index(self):
        return self.splits[0][2] if self.splits else 0

    @property
    def local_shape(self):
        shape = list(self.shape)
        for dim, parts, _ in self.splits:
            shape[dim] //= parts
        return tuple(shape)

    def bounds(self):
        """(start, stop) per dimension of the global tensor."""
        bounds = [(0, size) for size in self.shape]
        for dim, parts, index in self.splits:
            size = self.shape[dim] // parts
            bounds[dim] = (index * size, (index + 1) * size)
        return bounds

    def divides(self):
        return all(0 <= dim < len(self.shape) and self.shape[dim] % parts == 0 for dim, parts, _ in self.splits)

    def describe(self):
        """'the whole tensor', or 'part 2 of 4 along dimension 0' (joined by ' and ' for several splits)."""
        if self.whole:
            return "the whole tensor"
        return " and ".join(f"part {index + 1} of {parts} along dimension {dim}" for dim, parts, index in self.splits)


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
