"""Offline checkpoint transforms: merge a distributed checkpoint into one file, or write a checkpoint (whole or
distributed) as the rank files of another mesh, with a strategy.json per rank.

One tensor is in memory at a time (assembled whole, then cut for every target rank holding it); files are written
through CkptWriter under temporary names and appear only when complete.
"""
import math
import os

import numpy as np

from mindformers.checkpoint.atomic import atomic_files, atomic_folder
from mindformers.checkpoint.checkpoint_io import CKPT_NAME, checkpoint_name
from mindformers.checkpoint.checkpoint_source import rank_folders
from mindformers.checkpoint.ckpt_stream import CkptWriter
from mindformers.checkpoint.hf_convert import progress_bar
from mindformers.checkpoint.reshard import assemble, global_shape
from mindformers.checkpoint.tensor_dtypes import CKPT_TYPE, ITEMSIZE
from mindformers.checkpoint.tensor_pieces import Piece, cut
from mindformers.models.modules.layout import EXPERT_AXIS, MODEL_AXIS, declared_splits
from mindformers.parallel.layout_file import (TIED_EMBEDDING, mesh_record, rank_layout, split_entry,
                                             write_layout_file)
from mindformers.parallel.mesh import count_layers, expert_parallel_size, mesh_sizes, rank_coordinates
from mindformers.tools.errors import ConfigError

HEAD = "lm_head."  # the output projection of an untied model


def _total_bytes(source):
    return sum(max(info.nbytes * math.prod(parts for _, parts in piece.layout) for piece, info in source.holders(name))
               for name in source.names())


def _write(writer, name, dtype, array):
    writer.write_tensor(name, dtype, array.shape, [np.ascontiguousarray(array).reshape(-1)])


def merge_to_file(source, output_path, progress=True):
    """Every tensor of `source` whole, in one .ckpt at output_path; returns the number of tensors."""
    if not output_path.endswith(".ckpt"):
        raise ConfigError(f"--dst_checkpoint: {output_path}: a merged checkpoint is one .ckpt file (or give "
                          "--dst_mesh / --dst_strategy for rank folders)")
    names = source.names()
    with atomic_files(output_path) as (temp,), progress_bar(_total_bytes(source), "merge", progress) as bar:
        writer = CkptWriter(temp)
        try:
            for name in names:
                bar.update(_merge_tensor(source, name, writer))
            writer.finish(output_path)
        finally:
            writer.close()
    return len(names)


def _merge_tensor(source, name, writer):
    """One tensor assembled whole and written; its memory is freed before the next is assembled."""
    array, dtype = assemble(source, name, Piece(global_shape(source, name)))
    _write(writer, name, dtype, array)
    return array.nbytes


def source_weights(source):
    """{weight: {mesh axis: dim}} the source's layouts declare (empty for a checkpoint without a strategy)."""
    declared = {}
    for rank in source.ranks:
        layout = source.layouts.layout_for(rank.rank)
        for name, piece in layout.weights.items():
            if not declared.get(name):
                declared[name] = layout.declared.get(name) or (
                    {MODEL_AXIS: piece.split_dim} if piece.split_dim is not None else {})
    return declared


def tied_embedding(names):
    """(TIED_EMBEDDING,) when tensors named `names` are a model whose head reads the word embedding (it has no
    lm_head of its own): with pipeline stages the first and the last stage both hold it. Else ()."""
    return (TIED_EMBEDDING,) if TIED_EMBEDDING in names and not any(name.startswith(HEAD) for name in names) else ()


def mesh_records(source, mesh, declared, key="--dst_mesh", state_threshold=None):
    """{rank: layout record} of every rank of `mesh` for the source's tensors, weights split as `declared`
    ({weight: {mesh axis: dim}}, or {weight: model-parallel dim}) over model_parallel and expert_parallel. With
    `state_threshold` (bytes; the target runs the parallel optimizer) the optimizer state of every weight whose
    rank piece is at least that large, experts excepted, splits over data_parallel (optimizer_parts). A tied word
    embedding goes to the first and the last pipeline stage, as a run's own layout places it."""
    _, mp, _ = mesh_sizes(mesh)
    sizes = {MODEL_AXIS: mp, EXPERT_AXIS: expert_parallel_size(mesh)}
    entries = {}
    for name in source.names():
        if name not in declared:
            continue
        shape = global_shape(source, name)
        splits = declared_splits(declared[name])
        for axis, dim in splits.items():
            if sizes[axis] > 1 and shape[dim] % sizes[axis]:
                raise ConfigError(f"{key}: tensor '{name}' of shape {shape} cannot split its dimension {dim} into "
                                  f"{axis} {sizes[axis]} equal parts")
        dtype = source.holders(name)[0][1].dtype
        entry = split_entry(_Shape(shape, CKPT_TYPE[dtype]), splits, mp, sizes[EXPERT_AXIS],
                            local_shards=False)
        dp = mesh_sizes(mesh)[0]
        piece = rank_layout(mesh_record({name: entry}, mesh, 0), key).weights[name]
        if state_threshold is not None and dp > 1 and EXPERT_AXIS not in splits and \
                math.prod(piece.local_shape) * ITEMSIZE[dtype] >= state_threshold:
            entry["optimizer_parts"] = dp
        entries[name] = entry
    dp, mp, pp = mesh_sizes(mesh)
    layers = count_layers(entries)
    if pp > layers:
        raise ConfigError(f"{key}: pipeline_stage {pp} is more than the model's {layers} layer(s) (every stage holds "
                          f"at least one layer); expected at most {layers}")
    tied = tied_embedding(source.names()) if pp > 1 else ()
    return {rank: mesh_record(entries, mesh, rank, tied) for rank in range(dp * mp * pp)}


class _Shape:
    """What split_entry reads of a parameter: its (global) shape and dtype name."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), dtype


def records_from_layout(record, folder_records=None):
    """{rank: record} of every rank of a target layout given by one rank's record (others derived from the mesh)
    or by one record per rank."""
    dp, mp, pp = mesh_sizes(record["mesh"])
    folder_records = folder_records or {}
    return {rank: folder_records.get(rank) or dict(record, rank=rank, stage=rank_coordinates(rank, record["mesh"])[0])
            for rank in range(dp * mp * pp)}


def output_name(source, rank, prefix=None):
    """Rank files keep the source's name pattern (<prefix>_rank_<r>-<epoch>_<step>.ckpt), so a resume picks the
    same save on every rank."""
    reference = os.path.basename(source.ranks[0].path)
    match = CKPT_NAME.match(reference)
    if match:
        return checkpoint_name(prefix or match.group("prefix"), rank, match.group("epoch"), match.group("step"))
    return checkpoint_name(prefix or os.path.splitext(reference)[0], rank, 0, 0)


def write_distributed(source, records, output_dir, prefix=None, progress=True, key="--dst_checkpoint"):
    """The source as rank_<r>/ files of the target layout `records` ({rank: record}); returns the rank count."""
    if rank_folders(output_dir):
        raise ConfigError(f"{key}: {output_dir} already holds rank_*/ folders; choose a new or empty folder")
    layouts = {rank: rank_layout(record, "the target strategy", rank) for rank, record in records.items()}
    with atomic_folder(output_dir) as temp, progress_bar(_total_bytes(source), "transform", progress) as bar:
        writers = {}
        try:
            for rank in records:
                os.makedirs(os.path.join(temp, f"rank_{rank}"))
                writers[rank] = CkptWriter(os.path.join(temp, f"rank_{rank}", output_name(source, rank, prefix)))
            for name in source.names():
                bar.update(_split_tensor(source, name, layouts, writers))
            for writer in writers.values():
                writer.finish(writer.handle.name)  # in the temporary folder, under the name it keeps
        finally:
            for writer in writers.values():
                writer.close()
        for rank, record in records.items():
            write_layout_file(os.path.join(temp, f"rank_{rank}"), record)
    return len(records)


def _split_tensor(source, name, layouts, writers):
    """One tensor assembled whole, then its piece written for every target rank holding it."""
    shape = global_shape(source, name)
    wanted = {rank: layout.wanted(name, shape) for rank, layout in layouts.items()}
    for piece in wanted.values():
        if piece is not None and tuple(piece.shape) != shape:
            raise ConfigError(f"--dst_strategy: tensor '{name}' is {tuple(piece.shape)} in the target strategy, "
                              f"{shape} in {source.location}")
    full, dtype = assemble(source, name, Piece(shape))
    for rank, piece in wanted.items():
        if piece is not None:
            _write(writers[rank], name, dtype, cut(full, piece))
    return full.nbytes
