"""The layout (strategy) file saved beside each rank's checkpoints, and the check made when one is loaded as is.

The file records the mesh, the rank and its pipeline stage and, for every weight of the model, its GLOBAL shape,
the dimension split over model_parallel (from the layers' own declarations, `parameter_splits`), into how many
parts the checkpoint files split it, and its stage. A rank with model-parallel index m holds part m:
np.split(full, parts, axis=split_dim)[m]. Experts of mixture-of-experts layers also record `expert_dim` and
`expert_parts`: a rank with expert index e (its data index modulo expert_parallel) holds part e along expert_dim.
Optimizer moments follow their weight (rank_layout.weight_of). With the parallel optimizer a weight records
`optimizer_parts` (data_parallel): the tensors following it (its moments) split further along dimension 0 of the
rank's piece, the rank with data index d holding part d (mindformers/parallel/optimizer_shard.py).
"""
import json
import os

import mindspore as ms

from mindformers.checkpoint.atomic import atomic_files
from mindformers.checkpoint.rank_layout import RankLayout
from mindformers.checkpoint.tensor_pieces import Piece
from mindformers.models.modules.layout import EXPERT_AXIS, MODEL_AXIS, parameter_splits
from mindformers.parallel.optimizer_shard import sharded_state_names
from mindformers.parallel.mesh import (count_layers, describe_mesh, expert_index, expert_parallel_size, mesh_sizes,
                                       rank_coordinates, same_mesh, stage_of)
from mindformers.tools.errors import ConfigError

LAYOUT_FILE = "strategy.json"
TIED_EMBEDDING = "model.tok_embeddings.embedding_weight"  # with tie_word_embeddings, the last stage's head reads it
FORMAT = "mindformers-layout/2"
FIRST_FORMAT = "mindformers-layout/1"  # data parallelism only: local shapes were global, nothing split


def network_holds_shards():
    """CPU model parallelism builds each rank's network from its own shards; semi-auto parallel (Ascend) keeps
    global shapes in Python and saves whole tensors (integrated_save)."""
    return ms.get_auto_parallel_context("parallel_mode") in (ms.ParallelMode.STAND_ALONE,
                                                             ms.ParallelMode.DATA_PARALLEL)


def weight_entries(network, model_parallel, local_shards=None, expert_parallel=1):
    """name -> {shape (global), dtype, split_dim, parts[, expert_dim, expert_parts]} for every parameter."""
    local_shards = network_holds_shards() if local_shards is None else local_shards
    splits = parameter_splits(network)
    return {param.name: split_entry(param, splits.get(param.name, {}), model_parallel, expert_parallel, local_shards)
            for param in network.get_parameters()}


def split_entry(param, splits, model_parallel, expert_parallel, local_shards):
    shape = list(param.shape)
    entry = {"dtype": str(param.dtype)}
    for axis, dim_key, parts_key, size in ((MODEL_AXIS, "split_dim", "parts", model_parallel),
                                           (EXPERT_AXIS, "expert_dim", "expert_parts", expert_parallel)):
        dim = splits.get(axis)
        if axis == EXPERT_AXIS and dim is None:
            continue
        sharded = dim is not None and size > 1
        if sharded and local_shards:
            shape[dim] *= size
        entry[dim_key], entry[parts_key] = dim, size if sharded else 1
    entry["shape"] = shape
    return entry


def mesh_record(entries, mesh, rank_id, first_and_last=()):
    """The record of rank `rank_id` of `mesh` for weights described by `entries` (see weight_entries); each weight
    is given its pipeline stage, and the weights named in `first_and_last` (a tied word embedding) the list of the
    first and the last stage."""
    dp, mp, pp = mesh_sizes(mesh)
    num_layers = count_layers(entries)
    params = {name: dict(entry, stage=sorted({0, pp - 1}) if name in first_and_last else
                         stage_of(name, num_layers, pp)) for name, entry in entries.items()}
    return {"format": FORMAT, "mesh": dict(mesh), "world_size": dp * mp * pp, "rank": rank_id,
            "stage": rank_coordinates(rank_id, mesh)[0], "parameters": params}


def layout_record(network, settings, rank_id, local_shards=None):
    """The layout of `network` on this rank; a network cut to one pipeline stage describes the whole model it was cut
    from (`whole_model_entries`), so one rank's file describes every rank of the mesh. With the parallel optimizer
    the weights whose optimizer state splits (on every stage) record optimizer_parts."""
    entries = getattr(network, "whole_model_entries", None) or weight_entries(
        network, settings.model_parallel, local_shards, expert_parallel_size(settings.mesh()))
    if network_holds_shards() if local_shards is None else local_shards:
        sharded = getattr(network, "whole_model_sharded_states", None)
        for name in sharded_state_names(network, settings) if sharded is None else sharded:
            entries[name]["optimizer_parts"] = settings.optimizer_shards
    config = getattr(network, "config", None)
    tied = (TIED_EMBEDDING,) if settings.pipeline_stage > 1 and getattr(config, "tie_word_embeddings", False) else ()
    return mesh_record(entries, settings.mesh(), rank_id, tied)


def optimizer_piece(weight_piece, parts, data_index):
    """The piece of a weight's optimizer state a rank with data index `data_index` holds: part `data_index` of
    `parts` along dimension 0 of the weight's piece (a split of dimension 0 splits further)."""
    if parts == 1:
        return weight_piece
    splits = [split for split in weight_piece.splits if split[0] != 0]
    outer = [(parts_0, index_0) for dim, parts_0, index_0 in weight_piece.splits if dim == 0]
    outer_parts, outer_index = outer[0] if outer else (1, 0)
    splits.append((0, outer_parts * parts, outer_index * parts + data_index))
    return Piece.split(weight_piece.shape, splits)


def write_layout_file(folder, record):
    path = os.path.join(folder, LAYOUT_FILE)
    with atomic_files(path) as (temp,):
        with open(temp, "w", encoding="utf-8") as stream:
            json.dump(record, stream, indent=1, sort_keys=True)
    return path


def _upgrade_first_format(record):
    for entry in record["parameters"].values():
        entry.setdefault("parts", 1)
        entry.setdefault("stage", 0)
    record.setdefault("stage", 0)
    return record


def read_layout_file(path, key="src_strategy_path_or_dir"):
    try:
        with open(path, encoding="utf-8") as stream:
            record = json.load(stream)
    except (OSError, ValueError) as error:
        raise ConfigError(f"{key}: cannot read layout file {path}: {error}") from None
    if not isinstance(record, dict) or record.get("format") not in (FORMAT, FIRST_FORMAT) or \
            not isinstance(record.get("mesh"), dict) or not isinstance(record.get("parameters"), dict):
        raise ConfigError(f"{key}: {path} is not a layout file (expected format {FORMAT})")
    return _upgrade_first_format(record) if record["format"] == FIRST_FORMAT else record


def rank_layout(record, path, rank=None):
    """The RankLayout of `rank` (default: the record's own) under the record's mesh: a rank's pieces follow from
    its model-parallel and expert indices, so one rank's file describes every rank of the mesh."""
    rank = record.get("rank", 0) if rank is None else rank
    stage, data, model = rank_coordinates(rank, record["mesh"])
    experts = expert_index(rank, record["mesh"])
    weights, stages, declared, state = {}, {}, {}, {}
    for name, entry in record["parameters"].items():
        dim, parts = entry.get("split_dim"), int(entry.get("parts", 1))
        expert_dim, expert_parts = entry.get("expert_dim"), int(entry.get("expert_parts", 1))
        splits = [(dim, parts, model % parts)] if dim is not None else []
        if expert_dim is not None:
            splits.append((expert_dim, expert_parts, experts % expert_parts))
        weights[name] = Piece.split(tuple(entry["shape"]), splits)
        if int(entry.get("optimizer_parts", 1)) > 1:
            state[name] = optimizer_piece(weights[name], int(entry["optimizer_parts"]), data)
        declared[name] = {axis: d for axis, d in ((MODEL_AXIS, dim), (EXPERT_AXIS, expert_dim)) if d is not None}
        stage_entry = entry.get("stage", 0)
        stages[name] = frozenset(int(s) for s in (stage_entry if isinstance(stage_entry, list) else [stage_entry]))
    return RankLayout(rank=rank, stage=stage, weights=weights, stages=stages, where=path, declared=declared,
                      state=state)


def find_layout_file(checkpoint_path, src_strategy=None, rank_id=0):
    """src_strategy_path_or_dir when given (a file, or a folder holding it or rank_<r>/ of it), else the
    file beside the checkpoint; None when a checkpoint has none (a single-device or converted checkpoint)."""
    if src_strategy:
        if os.path.isfile(src_strategy):
            return src_strategy
        for candidate in (os.path.join(src_strategy, LAYOUT_FILE),
                          os.path.join(src_strategy, f"rank_{rank_id}", LAYOUT_FILE)):
            if os.path.isfile(candidate):
                return candidate
        raise ConfigError(f"src_strategy_path_or_dir: no {LAYOUT_FILE} at {src_strategy}")
    beside = os.path.join(os.path.dirname(os.path.abspath(checkpoint_path)), LAYOUT_FILE)
    return beside if os.path.isfile(beside) else None


def check_checkpoint_strategy(checkpoint_path, settings, rank_id=0, src_strategy=None, local_shards=None,
                              key="load_checkpoint", with_state=False):
    """Without auto_trans_ckpt a checkpoint loads as it is: it must come from the same mesh and from a rank at
    the same place in it (same stage and model-parallel part; data-parallel replicas are interchangeable), and a
    checkpoint of whole tensors cannot fill a network that holds shards. `with_state` (a resume): the optimizer state
    must be split alike (parallel optimizer), and when it is split the rank's data-parallel index matters too.
    Returns the saved mesh (None: no layout)."""
    path = find_layout_file(checkpoint_path, src_strategy, rank_id)
    current = settings.mesh()
    hint = "; set auto_trans_ckpt True to transform it on load"
    if path is None:
        local_shards = network_holds_shards() if local_shards is None else local_shards
        if local_shards and (settings.model_parallel > 1 or settings.pipeline_stage > 1
                             or expert_parallel_size(current) > 1):
            raise ConfigError(f"{key}: {checkpoint_path} has no {LAYOUT_FILE} beside it, so it holds whole tensors, "
                              f"but this run ({describe_mesh(current)}) holds shards{hint}")
        return None
    record = read_layout_file(path)
    saved = record["mesh"]
    if not same_mesh(saved, current):
        raise ConfigError(f"{key}: {checkpoint_path} was saved under {describe_mesh(saved)} ({path}), this run uses "
                          f"{describe_mesh(current)}{hint}")
    saved_rank = int(record.get("rank", 0))
    saved_stage, _, saved_model = rank_coordinates(saved_rank, saved)
    stage, _, model = rank_coordinates(rank_id, current)
    saved_experts, experts = expert_index(saved_rank, saved), expert_index(rank_id, current)
    saved_state_parts = max([int(e.get("optimizer_parts", 1)) for e in record["parameters"].values()] + [1])
    if with_state and saved_state_parts != settings.optimizer_shards:
        raise ConfigError(f"{key}: {checkpoint_path} holds optimizer state split over {saved_state_parts} "
                          f"data-parallel rank(s) ({path}), this run splits it over {settings.optimizer_shards} "
                          f"(parallel.enable_parallel_optimizer){hint}")
    other_slice = rank_coordinates(saved_rank, saved)[1] != rank_coordinates(rank_id, current)[1]
    if with_state and saved_state_parts > 1 and other_slice:
        raise ConfigError(f"{key}: {checkpoint_path} holds rank {saved_rank}'s slice of the optimizer state, this is "
                          f"rank {rank_id}; pass the folder holding rank_*/ or set auto_trans_ckpt True")
    if (saved_stage, saved_model, saved_experts) != (stage, model, experts):
        holds = f"stage {saved_stage}, model-parallel part {saved_model}"
        wants = f"stage {stage}, part {model}"
        if expert_parallel_size(saved) > 1:
            holds, wants = f"{holds}, experts part {saved_experts}", f"{wants}, experts part {experts}"
        raise ConfigError(f"{key}: {checkpoint_path} holds rank {record.get('rank')}'s shards ({holds}), this is "
                          f"rank {rank_id} ({wants}); pass the folder holding rank_*/ or set auto_trans_ckpt True")
    return saved
