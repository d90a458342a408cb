"""Strategy files MindSpore writes under semi-auto parallel (Ascend), read as RankLayouts.

The file is the protobuf ParallelStrategyMap (mindspore.train.node_strategy_pb2). For each parameter it holds a
device matrix (the devices of one pipeline stage arranged as an N-d grid, e.g. [dp, mp]) and a tensor map: per
tensor dimension, -1 (not split) or k, meaning split over device axis len(dev_matrix) - 1 - k. A device's position
on that axis (row-major over the grid) is the part it holds. Files merged over pipeline stages
(mindspore.merge_pipeline_strategys) prefix names with "<stage>-". Only plain splits are read: one tensor
dimension over one device axis, no optimizer sharding, no uneven or field splits.
"""
import os
import re
from dataclasses import dataclass, field
from typing import Dict, Tuple

import numpy as np

from mindformers.checkpoint.rank_layout import RankLayout
from mindformers.checkpoint.tensor_pieces import Piece
from mindformers.tools.errors import ConfigError

MERGED_NAME = re.compile(r"^(\d+)-(.+)$")


@dataclass
class MindSporeStrategy:
    """Per stage, per parameter: (split dim or None, device matrix, device axis of the split or None)."""

    where: str
    layouts: Dict[int, Dict[str, Tuple]] = field(default_factory=dict)
    stage_devices: int = 0

    @property
    def world_size(self):
        return self.stage_devices * len(self.layouts)

    def describe(self):
        return f"{len(self.layouts)} pipeline stage(s) of {self.stage_devices} devices ({self.where})"

    def rank_layout(self, rank):
        stage, position = divmod(rank, self.stage_devices)
        weights, stages = {}, {}
        for layout_stage, layouts in sorted(self.layouts.items()):
            for name in layouts:
                stages.setdefault(name, set()).add(layout_stage)
        for name, held_in in stages.items():
            split_dim, dev_matrix, axis = self.layouts[stage if stage in held_in else min(held_in)][name]
            if split_dim is None:
                weights[name] = Piece(None)
            else:
                coordinates = np.unravel_index(position, dev_matrix)
                weights[name] = Piece.along(None, split_dim, int(dev_matrix[axis]), int(coordinates[axis]))
        return RankLayout(rank=rank, stage=stage, weights=weights,
                          stages={name: frozenset(held) for name, held in stages.items()}, where=self.where)


def parse_strategy_map(data):
    """The ParallelStrategyMap in `data`, or None when the bytes are not one holding parameter layouts."""
    from mindspore.train import node_strategy_pb2  # pylint: disable=import-outside-toplevel
    strategy_map = node_strategy_pb2.ParallelStrategyMap()
    try:
        strategy_map.ParseFromString(data)
    except Exception:  # pylint: disable=broad-except  (protobuf raises DecodeError or RuntimeError by backend)
        return None
    return strategy_map if strategy_map.parallel_layout_item else None


def plain_split(name, layouts, path):
    """(split dim, dev matrix, device axis) of one parameter, or a one-line error for what we cannot reshard."""
    def refuse(why):
        raise ConfigError(f"{path}: parameter '{name}' {why}; only plain splits of one dimension can be resharded")
    if len(layouts.tensor_map) != 1 or len(layouts.dev_matrix) != 1:
        refuse("has an interleaved layout (several tensor maps)")
    dev_matrix = [int(d) for d in layouts.dev_matrix[0].dim]
    tensor_map = [int(d) for d in layouts.tensor_map[0].dim]
    if layouts.opt_weight_shard_size > 1:
        refuse(f"is optimizer-sharded (opt_weight_shard_size {layouts.opt_weight_shard_size})")
    if layouts.field > 0 or any(list(shape.dim) for shape in layouts.param_split_shape):
        refuse("has an uneven or field split")
    split = [(dim, axis) for dim, axis in enumerate(tensor_map) if axis != -1]
    if any(not 0 <= axis < len(dev_matrix) for _, axis in split):
        refuse(f"has tensor map {tensor_map} outside its device matrix {dev_matrix}")
    split = [(dim, axis) for dim, axis in split if dev_matrix[len(dev_matrix) - 1 - axis] > 1]
    if len(split) > 1:
        refuse(f"is split along dimensions {[dim for dim, _ in split]} (tensor map {tensor_map})")
    if not split:
        return None, dev_matrix, None
    dim, axis = split[0]
    return dim, dev_matrix, len(dev_matrix) - 1 - axis


def add_strategy_map(strategy, strategy_map, path):
    file_stage = 0
    if strategy_map.parallel_strategy_item:
        file_stage = int(strategy_map.parallel_strategy_item[0].parallel_strategys.stage)
    for item in strategy_map.parallel_layout_item:
        merged = MERGED_NAME.match(item.param_name)
        stage, name = (int(merged.group(1)), merged.group(2)) if merged else (file_stage, item.param_name)
        split_dim, dev_matrix, axis = plain_split(name, item.parallel_layouts, path)
        devices = int(np.prod(dev_matrix))
        if strategy.stage_devices and devices != strategy.stage_devices:
            raise ConfigError(f"{path}: parameter '{name}' has a device matrix of {devices} devices, others of "
                              f"{strategy.stage_devices}; expected one device count per pipeline stage")
        strategy.stage_devices = devices
        strategy.layouts.setdefault(stage, {})[name] = (split_dim, dev_matrix, axis)


def read_mindspore_strategy(paths, key="src_strategy_path_or_dir"):
    """One MindSpore strategy from protobuf files (one merged file, or one per stage or per rank)."""
    strategy = MindSporeStrategy(where=paths[0] if len(paths) == 1 else os.path.dirname(paths[0]))
    for path in paths:
        with open(path, "rb") as stream:
            strategy_map = parse_strategy_map(stream.read())
        if strategy_map is None:
            raise ConfigError(f"{key}: {path} is neither a layout file nor a MindSpore strategy file "
                              "(ParallelStrategyMap with parameter layouts)")
        add_strategy_map(strategy, strategy_map, path)
    stages = sorted(strategy.layouts)
    if stages != list(range(len(stages))):
        raise ConfigError(f"{key}: {strategy.where} holds pipeline stages {stages}; expected every stage from 0 "
                          f"(pass the strategy files of all stages, or one merged file)")
    return strategy
