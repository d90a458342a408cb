"""What one rank's checkpoint file holds: for each weight, the piece of its global tensor and the pipeline stages
holding it. Built from our layout files (mindformers/parallel/layout_file.py), from MindSpore strategy files
(mindspore_strategy.py), or for a run's own network; resharding reads only this form.

Tensors that are not weights follow a weight when their name ends with it (AdamW's adam_m.<weight> and
adam_v.<weight>, any optimizer's clones): they hold the same piece. Anything else (step counters, learning rate,
loss scale) is whole on every rank.
"""
from dataclasses import dataclass, field, replace
from typing import Dict, FrozenSet

from mindformers.checkpoint.tensor_pieces import Piece
from mindformers.tools.errors import ConfigError


def weight_of(name, weights):
    """The weight `name` is or follows (its name without leading dotted prefixes), else None."""
    parts = name.split(".")
    for start in range(len(parts)):
        candidate = ".".join(parts[start:])
        if candidate in weights:
            return candidate
    return None


@dataclass
class RankLayout:
    """`weights` maps weight names to pieces; a piece whose shape is None takes its global shape from the file
    (MindSpore strategies do not record shapes). `where` names the layout's file for messages."""

    rank: int
    stage: int
    weights: Dict[str, Piece] = field(default_factory=dict)
    stages: Dict[str, FrozenSet[int]] = field(default_factory=dict)
    where: str = ""
    declared: Dict[str, Dict[str, int]] = field(default_factory=dict)  # weight -> {mesh axis: dim} it splits
    # weight -> the piece of the tensors following it (its optimizer moments) when the parallel optimizer splits
    # them further than the weight
    state: Dict[str, Piece] = field(default_factory=dict)

    def piece_of(self, name, weight):
        """The piece `name` (the weight `weight` itself, or a tensor following it) is of its global tensor."""
        if name != weight and weight in self.state:
            return self.state[weight]
        return self.weights[weight]

    def holds(self, name):
        weight = weight_of(name, self.weights)
        return weight is None or self.stage in self.stages.get(weight, frozenset([self.stage]))

    def wanted(self, name, shape):
        """The piece of `name` a target rank must hold (`shape`: the whole tensor's shape, used when the layout
        does not know it); None when its stage does not hold the tensor."""
        if not self.holds(name):
            return None
        weight = weight_of(name, self.weights)
        if weight is None:
            return Piece(tuple(shape))
        piece = self.piece_of(name, weight)
        return replace(piece, shape=tuple(shape) if piece.shape is None else piece.shape)

    def held(self, name, file_shape, path):
        """The piece tensor `name`, found with `file_shape` in checkpoint `path`, is of its global tensor."""
        file_shape = tuple(int(d) for d in file_shape)
        weight = weight_of(name, self.weights)
        if weight is None:
            return Piece(file_shape)
        if not self.holds(name):
            raise ConfigError(f"{path}: holds '{name}', which {self.where} places on stage(s) "
                              f"{sorted(self.stages[weight])}, not on this rank's stage {self.stage}")
        piece = self.piece_of(name, weight)
        if piece.shape is None:
            shape = list(file_shape)
            for dim, parts, _ in piece.splits:
                if dim >= len(file_shape):
                    raise ConfigError(f"{path}: tensor '{name}' has shape {file_shape}, but {self.where} splits its "
                                      f"dimension {dim}")
                shape[dim] *= parts
            return replace(piece, shape=tuple(shape))
        if piece.local_shape != file_shape:
            raise ConfigError(f"{path}: tensor '{name}' has shape {file_shape}, but {self.where} says this rank "
                              f"holds {piece.describe()} of {piece.shape}, i.e. {piece.local_shape}")
        return piece


def whole_layout(where=""):
    """The layout of a checkpoint without a strategy: every tensor whole."""
    return RankLayout(rank=0, stage=0, where=where or "a checkpoint without a strategy")
