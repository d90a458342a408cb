"""Which model-parallel shard this process holds, and the communication groups its explicit collectives use.

On CPU the graph stays stand-alone (MindSpore 2.10 cannot compile semi-auto parallel for CPU), so tensor
parallelism is written into the layers (mindformers/parallel/tensor_parallel.py). The layers read
`current_groups()` when they are built: how many model-parallel shards there are, which one this rank keeps, and
the group to all-reduce over. A rank's model-parallel group holds the ranks that share its batch and split the
weights; its data-parallel group the ranks that hold the same shards and average their gradients.

A group of None means "no communication": each collective then returns this rank's own contribution (what an
all-reduce would add up), which lets a single process compute one rank's share (the shard tests do).
"""
import contextlib
from dataclasses import dataclass
from typing import Optional

from mindformers.parallel.mesh import rank_coordinates


@dataclass(frozen=True)
class ParallelGroups:
    model_parallel: int = 1
    model_rank: int = 0
    model_group: Optional[str] = None
    data_parallel: int = 1
    data_group: Optional[str] = None

    @property
    def model_sharded(self):
        return self.model_parallel > 1


_CURRENT = [ParallelGroups()]


def current_groups():
    return _CURRENT[0]


@contextlib.contextmanager
def using_groups(groups):
    """Build layers for `groups` inside the block (a shard simulated in one process, or a test)."""
    previous = _CURRENT[0]
    _CURRENT[0] = groups
    try:
        yield groups
    finally:
        _CURRENT[0] = previous


def group_ranks(rank_id, settings):
    """(model-parallel ranks, data-parallel ranks) of the groups `rank_id` belongs to."""
    dp, mp = settings.data_parallel, settings.model_parallel
    stage, data, model = rank_coordinates(rank_id, settings.mesh())
    first = stage * dp * mp
    return [first + data * mp + k for k in range(mp)], [first + d * mp + model for d in range(dp)]


def _create(kind, ranks):
    if len(ranks) == 1:
        return None
    from mindspore.communication import create_group  # pylint: disable=import-outside-toplevel
    name = f"{kind}_" + "_".join(str(rank) for rank in ranks)
    create_group(name, ranks)
    return name


def init_parallel_groups(settings, rank_id):
    """Create this rank's model- and data-parallel groups (communication is initialised) and make them current."""
    model_ranks, data_ranks = group_ranks(rank_id, settings)
    groups = ParallelGroups(model_parallel=settings.model_parallel, model_rank=model_ranks.index(rank_id),
                            model_group=_create("model_parallel", model_ranks),
                            data_parallel=settings.data_parallel, data_group=_create("data_parallel", data_ranks))
    _CURRENT[0] = groups
    return groups
