"""A checkpoint to reshard: one file, or a folder of rank_<r>/ files, with the layout every rank saved under.

Opening one indexes every file (names, shapes, byte ranges; no tensor data) and checks it against its layout, so
a missing strategy, a rank folder that is missing, or a file that does not hold what its strategy says is a
one-line error before anything is loaded. The layout comes from --src_strategy_path_or_dir (our strategy.json, a
folder of them, or MindSpore strategy files), else from the strategy.json in each rank folder.
"""
import json
import os
from dataclasses import dataclass
from typing import Callable, Dict

from mindformers.checkpoint.checkpoint_io import RANK_FOLDER, list_checkpoints, resolve_checkpoint, same_save
from mindformers.checkpoint.hf_convert import read_our_checkpoint
from mindformers.checkpoint.mindspore_strategy import read_mindspore_strategy
from mindformers.checkpoint.rank_layout import RankLayout, whole_layout
from mindformers.checkpoint.tensor_pieces import Piece
from mindformers.checkpoint.tensor_store import TensorInfo
from mindformers.parallel.layout_file import LAYOUT_FILE, rank_layout, read_layout_file
from mindformers.parallel.mesh import describe_mesh, mesh_sizes
from mindformers.tools.errors import ConfigError


@dataclass
class LayoutSet:
    """How every rank of the saved mesh lays out its tensors."""

    layout_for: Callable[[int], RankLayout]
    world_size: int
    description: str


@dataclass
class SourceRank:
    rank: int
    path: str
    tensors: Dict[str, TensorInfo]
    pieces: Dict[str, Piece]


def is_our_layout_file(path):
    try:
        with open(path, encoding="utf-8") as stream:
            return isinstance(json.load(stream), dict)
    except (OSError, ValueError):
        return False


def layouts_from_records(records, key):
    """records: {rank: (record, path)} from our layout files; one mesh for all, each file at its own rank."""
    first_rank = min(records)
    first, first_path = records[first_rank]
    for rank, (record, path) in records.items():
        if mesh_sizes(record["mesh"]) != mesh_sizes(first["mesh"]):
            raise ConfigError(f"{key}: {path} names mesh {describe_mesh(record['mesh'])}, {first_path} names "
                              f"{describe_mesh(first['mesh'])}; expected the layouts of one run")
        if len(records) > 1 and int(record.get("rank", rank)) != rank:
            raise ConfigError(f"{key}: {path} is the layout of rank {record.get('rank')}, expected rank {rank}")

    def layout_for(rank):
        record, path = records.get(rank, (first, first_path))
        return rank_layout(record, path, rank)
    dp, mp, pp = mesh_sizes(first["mesh"])
    return LayoutSet(layout_for, dp * mp * pp, f"{describe_mesh(first['mesh'])} ({first_path})")


def our_layout_records(path, key):
    """{rank: (record, file)} of our strategy.json at `path` (the file, a folder holding one, or its rank_<r>/
    folders holding one each); None when `path` holds none of ours."""
    if os.path.isfile(path):
        if not is_our_layout_file(path):
            return None
        record = read_layout_file(path, key)
        return {int(record.get("rank", 0)): (record, path)}
    per_rank = {rank: os.path.join(folder, LAYOUT_FILE) for rank, folder in rank_folders(path).items()}
    per_rank = {rank: file for rank, file in per_rank.items() if os.path.isfile(file)}
    if per_rank:
        return {rank: (read_layout_file(file, key), file) for rank, file in per_rank.items()}
    single = os.path.join(path, LAYOUT_FILE)
    return our_layout_records(single, key) if os.path.isfile(single) else None


def layouts_from_strategy(src_strategy, key="src_strategy_path_or_dir"):
    """--src_strategy_path_or_dir: our strategy.json (one rank's describes every rank of its mesh), a folder of
    them, or MindSpore strategy file(s): one file, or a folder of per-stage files."""
    path = os.path.expanduser(str(src_strategy))
    if not os.path.exists(path):
        raise ConfigError(f"{key}: not found: {src_strategy}")
    records = our_layout_records(path, key)
    if records:
        return layouts_from_records(records, key)
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(path, name) for name in os.listdir(path)
        if os.path.isfile(os.path.join(path, name)) and not name.startswith("."))
    if not files:
        raise ConfigError(f"{key}: {src_strategy} holds no {LAYOUT_FILE}, rank_*/{LAYOUT_FILE} or MindSpore "
                          "strategy files")
    strategy = read_mindspore_strategy(files, key)
    return LayoutSet(strategy.rank_layout, strategy.world_size, strategy.describe())


def rank_folders(path):
    """{rank: folder} of the rank_<r>/ folders directly inside `path`."""
    if not os.path.isdir(path):
        return {}
    found = {}
    for name in os.listdir(path):
        match = RANK_FOLDER.match(name)
        if match and os.path.isdir(os.path.join(path, name)):
            found[int(match.group(1))] = os.path.join(path, name)
    return dict(sorted(found.items()))


def checkpoint_files(location, resume_name=None, key="load_checkpoint"):
    """(root folder or None, {rank: checkpoint file}): a file is rank 0's; a folder's rank_<r>/ (also under
    checkpoint/) each give the file of the newest save (or of the save `resume_name` names)."""
    path = os.path.expanduser(str(location))
    if os.path.isfile(path):
        return None, {0: path}
    if not os.path.isdir(path):
        raise ConfigError(f"{key}: checkpoint not found: {location}")
    root = path if rank_folders(path) else os.path.join(path, "checkpoint")
    folders = rank_folders(root)
    if not folders:
        files = list_checkpoints(path)
        if not files:
            raise ConfigError(f"{key}: no .ckpt files in {location} (looked in rank_*/ and the folder)")
        return None, {0: files[-1]}
    first_rank, first_folder = next(iter(folders.items()))
    reference = resolve_checkpoint(first_folder, first_rank, resume_name, key)
    return root, {rank: reference if rank == first_rank else same_save(reference, rank, folder, key)
                  for rank, folder in folders.items()}


def saved_layouts(root, files, key):
    """The layouts beside the files: strategy.json in every rank folder; none at all means whole tensors."""
    beside = {rank: os.path.join(os.path.dirname(path), LAYOUT_FILE) for rank, path in files.items()}
    present = {rank: path for rank, path in beside.items() if os.path.isfile(path)}
    if not present:
        if len(files) > 1:
            raise ConfigError(f"{key}: {root} holds {len(files)} rank folders but no {LAYOUT_FILE} (expected one "
                              f"beside each rank's checkpoint); pass the strategy with --src_strategy_path_or_dir")
        return LayoutSet(lambda rank: whole_layout(files[rank]), 1, "whole tensors (no strategy)")
    missing = sorted(set(files) - set(present))
    if missing:
        raise ConfigError(f"{key}: {os.path.dirname(beside[missing[0]])} has no {LAYOUT_FILE} (expected one beside "
                          f"each rank's checkpoint, as in {os.path.dirname(next(iter(present.values())))})")
    return layouts_from_records({rank: (read_layout_file(path, key), path) for rank, path in present.items()}, key)


class CheckpointSource:
    """Every file of a (possibly distributed) checkpoint, indexed, with the piece each tensor is of its global
    tensor."""

    def __init__(self, location, src_strategy=None, resume_name=None, key="load_checkpoint"):
        self.location, self.key = str(location), key
        self.root, files = checkpoint_files(location, resume_name, key)
        self.layouts = layouts_from_strategy(src_strategy) if src_strategy else saved_layouts(self.root, files, key)
        if self.root is None:
            files = self.single_file(files[0])
        for rank in files:
            if rank >= self.layouts.world_size:
                raise ConfigError(f"{key}: {os.path.dirname(files[rank])} is rank {rank}, but the strategy "
                                  f"{self.layouts.description} has {self.layouts.world_size} ranks")
        self.ranks = [self.index_rank(rank, path) for rank, path in files.items()]

    def single_file(self, path):
        """A file alone is usable when its rank needs no other (whole tensors, every weight on its stage)."""
        rank = 0
        beside = os.path.join(os.path.dirname(os.path.abspath(path)), LAYOUT_FILE)
        if self.layouts.world_size > 1 and os.path.isfile(beside):
            rank = int(read_layout_file(beside, self.key).get("rank", 0))
        layout = self.layouts.layout_for(rank)
        if not all(piece.whole and layout.holds(name) for name, piece in layout.weights.items()):
            raise ConfigError(f"{self.key}: {path} is one rank's part of a checkpoint saved under "
                              f"{self.layouts.description}; pass the folder holding its rank_*/ folders")
        return {rank: path}

    def index_rank(self, rank, path):
        tensors = read_our_checkpoint(path, self.key)
        layout = self.layouts.layout_for(rank)
        pieces = {name: layout.held(name, info.shape, path) for name, info in tensors.items()}
        return SourceRank(rank, path, tensors, pieces)

    def names(self):
        """Every tensor name, in the order the files hold them (lowest rank first)."""
        seen = {}
        for rank in self.ranks:
            seen.update(dict.fromkeys(rank.tensors))
        return list(seen)

    def holders(self, name):
        """[(piece, TensorInfo)] of every file holding a piece of `name`."""
        return [(rank.pieces[name], rank.tensors[name]) for rank in self.ranks if name in rank.tensors]

    def expected_holders(self, name, piece):
        """Where the piece should have come from: 'rank_<r>/ is missing' or 'rank_<r>/<file> lacks it'."""
        present = {rank.rank: rank for rank in self.ranks}
        notes = []
        for rank in range(self.layouts.world_size):
            layout = self.layouts.layout_for(rank)
            wanted = layout.wanted(name, piece.shape) if layout.holds(name) else None
            if wanted is None or wanted.splits != piece.splits:
                continue
            notes.append(f"rank_{rank}/ is missing" if rank not in present else
                         f"{present[rank].path} lacks it")
        return "; ".join(notes) or "no rank of the strategy holds it"
