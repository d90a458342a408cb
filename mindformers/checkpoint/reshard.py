"""Assembling, one tensor at a time, the piece a target rank needs out of the pieces a source checkpoint holds.

Memory is the target piece plus one source piece at a time: source pieces are read only when they overlap the
target, and one split of the tensor (one group of pieces of the same split) is enough to cover it.
"""
import itertools

import numpy as np

from mindformers.checkpoint.ckpt_load import as_tensor
from mindformers.checkpoint.tensor_dtypes import NUMPY
from mindformers.checkpoint.tensor_pieces import Piece, copy_overlap, overlap
from mindformers.tools.errors import ConfigError


def _global_shape_and_dtype(source, name, holders):
    shapes = {piece.shape for piece, _ in holders}
    dtypes = {info.dtype for _, info in holders}
    if len(shapes) > 1 or len(dtypes) > 1:
        raise ConfigError(f"{source.key}: {source.location}: tensor '{name}' is {sorted(shapes)} / {sorted(dtypes)} "
                          "in different rank files; expected one global shape and dtype")
    return next(iter(shapes)), next(iter(dtypes))


def global_shape(source, name):
    return _global_shape_and_dtype(source, name, source.holders(name))[0]


def assemble(source, name, target):
    """(array, dtype) of the block `target` names of tensor `name` (bf16 as its uint16 bits), or None when the
    source has no such tensor."""
    holders = source.holders(name)
    if not holders:
        return None
    shape, dtype = _global_shape_and_dtype(source, name, holders)
    if shape != tuple(target.shape):
        raise ConfigError(f"{source.key}: {source.location}: tensor '{name}' has global shape {shape}, the model "
                          f"expects {tuple(target.shape)}")
    for piece, info in holders:
        if piece.bounds() == target.bounds():
            return info.read(), dtype
    groups = {}  # layout ((dim, parts), ...) -> {part indices: (piece, file)}: one layout is enough to cover it
    for piece, info in holders:
        groups.setdefault(piece.layout, {}).setdefault(piece.indices, (piece, info))
    lacking = None
    for layout, by_indices in groups.items():
        candidates = itertools.product(*(range(parts) for _, parts in layout))
        needed = [indices for indices in candidates if overlap(target, Piece.split(shape, [
            (dim, parts, index) for (dim, parts), index in zip(layout, indices)]))]
        absent = [indices for indices in needed if indices not in by_indices]
        if absent:
            lacking = lacking or Piece.split(shape, [(dim, parts, index)
                                                     for (dim, parts), index in zip(layout, absent[0])])
            continue
        out = np.empty(target.local_shape, dtype=NUMPY[dtype])
        for indices in needed:
            piece, info = by_indices[indices]
            copy_overlap(out, target, info.read(), piece)
        return out, dtype
    if len(lacking.splits) == 1:
        missing = (f"part {lacking.index + 1} of {lacking.parts} of tensor '{name}' (split along dimension "
                   f"{lacking.split_dim})")
    else:
        missing = f"{lacking.describe()} of tensor '{name}'"
    raise ConfigError(f"{source.key}: {source.location}: no file holds {missing}: "
                      f"{source.expected_holders(name, lacking)}")


def reshard_for(source, target, params, progress=True):
    """{name: Tensor} for a rank whose layout is `target`: every parameter (name -> Parameter) its stage holds
    and the source has, as the piece `target` wants, plus the source's other tensors (step counters, loss scale)."""
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    loaded = {}
    for name, param in tqdm(params.items(), desc="reshard", unit="tensor", disable=None if progress else True):
        piece = target.wanted(name, param.shape)
        if piece is None:
            continue
        assembled = assemble(source, name, piece)
        if assembled is not None:
            loaded[name] = as_tensor(*assembled)
    for name in source.names():
        if name in params:
            continue
        whole = [(piece, info) for piece, info in source.holders(name) if piece.whole]
        if whole:
            loaded[name] = as_tensor(whole[0][1].read(), whole[0][1].dtype)
    return loaded
