"""Assembling, one tensor at a time, the piece a target rank needs out of the pieces a source checkpoint holds.

Memory is the target piece plus one source piece at a time: source pieces are read only when they overlap the
target, and one split of the tensor (one group of pieces of the same split) is enough to cover it.
"""
import numpy as np
import mindspore as ms

from mindformers.checkpoint.tensor_dtypes import NUMPY, cast
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
    groups = {}  # (split dim, parts) -> {part index: (piece, file)}: one split is enough to cover the target
    for piece, info in holders:
        split, index = ((None, 1), 0) if piece.whole else ((piece.split_dim, piece.parts), piece.index)
        groups.setdefault(split, {}).setdefault(index, (piece, info))
    lacking = None
    for (dim, parts), by_index in groups.items():
        needed = [index for index in range(parts) if overlap(target, Piece(shape, dim, parts, index))]
        absent = [index for index in needed if index not in by_index]
        if absent:
            lacking = lacking or Piece(shape, dim, parts, absent[0])
            continue
        out = np.empty(target.local_shape, dtype=NUMPY[dtype])
        for index in needed:
            piece, info = by_index[index]
            copy_overlap(out, target, info.read(), piece)
        return out, dtype
    raise ConfigError(f"{source.key}: {source.location}: no file holds part {lacking.index + 1} of {lacking.parts} "
                      f"of tensor '{name}' (split along dimension {lacking.split_dim}): "
                      f"{source.expected_holders(name, lacking)}")


def as_parameter(name, array, dtype):
    """What ms.load_checkpoint returns for a tensor (load_param_into_net takes only Parameters)."""
    if dtype == "BF16":
        return ms.Parameter(ms.Tensor(cast(array, "BF16", "F32"), ms.bfloat16), name=name)
    return ms.Parameter(ms.Tensor(array), name=name)


def reshard_for(source, target, params, progress=True):
    """{name: Parameter} for a rank whose layout is `target`: every parameter (name -> Parameter) its stage holds
    and the source has, as the piece `target` wants, plus the source's other tensors (step counters, loss scale)."""
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    loaded = {}
    for name, param in tqdm(params.items(), desc="reshard", unit="tensor", disable=None if progress else True):
        piece = target.wanted(name, param.shape)
        if piece is None:
            continue
        assembled = assemble(source, name, piece)
        if assembled is not None:
            loaded[name] = as_parameter(name, *assembled)
    for name in source.names():
        if name in params:
            continue
        whole = [(piece, info) for piece, info in source.holders(name) if piece.whole]
        if whole:
            loaded[name] = as_parameter(name, whole[0][1].read(), whole[0][1].dtype)
    return loaded
