"""Which model-parallel shard this process holds, and the communication groups its explicit collectives use.

On CPU the graph stays stand-alone (MindSpore 2.10 cannot compile semi-auto parallel for CPU), so tensor
parallelism is placed into the built layers by `parallelize(model, groups)` (mindformers/parallel/parallelize.py):
the groups say how many model-parallel shards there are, which one this rank keeps, and the group to all-reduce
over. A rank's model-parallel group holds the ranks that share its batch and split the weights; its data-parallel
group the ranks that hold the same shards and average their gradients.

Mixture-of-experts layers split their experts over `expert_parallel` ranks, a block of consecutive data-parallel
indices (MindFormers: expert_parallel divides data_parallel): the expert group exchanges tokens, the expert-model
group (expert group x model group) sums the experts' partial outputs, and the expert-data group (the ranks holding
the same experts) sums the experts' gradients.

A group of None means "no communication": each collective then returns this rank's own contribution (what an
all-reduce would add up), which lets a single process compute one rank's share (the shard tests do).
"""
from dataclasses import dataclass
from typing import Optional

from mindformers.parallel.mesh import rank_coordinates


@dataclass(frozen=True)
class ParallelGroups:
    model_parallel: int = 1
    model_rank: int = 0
    model_group: Optional[str] = None
    data_parallel: int = 1
    data_rank: int = 0
    data_group: Optional[str] = None
    expert_parallel: int = 1
    expert_rank: int = 0
    expert_group: Optional[str] = None
    expert_model_group: Optional[str] = None
    expert_data_group: Optional[str] = None
    # parallel_config.use_seq_parallel: between the tensor-parallel regions each model-parallel rank keeps its slice
    # of the sequence (mindformers/parallel/sequence_parallel.py)
    sequence_parallel: bool = False

    @property
    def model_sharded(self):
        return self.model_parallel > 1

    @property
    def sequence_sharded(self):
        return self.sequence_parallel and self.model_parallel > 1

    @property
    def experts_sharded(self):
        return self.expert_parallel > 1


def group_ranks(rank_id, settings):
    """(model-parallel ranks, data-parallel ranks) of the groups `rank_id` belongs to."""
    dp, mp = settings.data_parallel, settings.model_parallel
    stage, data, model = rank_coordinates(rank_id, settings.mesh())
    first = stage * dp * mp
    return [first + data * mp + k for k in range(mp)], [first + d * mp + model for d in range(dp)]


def expert_parallel_of(settings):
    return int(getattr(settings, "expert_parallel", 1) or 1)


def expert_group_ranks(rank_id, settings):
    """(expert ranks, expert x model ranks, expert-data ranks) of the groups `rank_id` belongs to: the expert
    group is the block of expert_parallel consecutive data-parallel indices holding this rank's (same stage and
    model-parallel index); this rank's expert index is its data index modulo expert_parallel."""
    dp, mp, ep = settings.data_parallel, settings.model_parallel, expert_parallel_of(settings)
    stage, data, model = rank_coordinates(rank_id, settings.mesh())
    first, block = stage * dp * mp, data - data % ep

    def rank(d, m):
        return first + d * mp + m
    experts = [rank(block + e, model) for e in range(ep)]
    expert_model = [rank(block + e, m) for e in range(ep) for m in range(mp)]
    replicas = [rank(d, model) for d in range(data % ep, dp, ep)]
    return experts, expert_model, replicas


def _create(kind, ranks):
    if len(ranks) == 1:
        return None
    from mindspore.communication import create_group  # pylint: disable=import-outside-toplevel
    name = f"{kind}_" + "_".join(str(rank) for rank in ranks)
    create_group(name, ranks)
    return name


def init_parallel_groups(settings, rank_id, sequence_parallel=None):
    """Create this rank's model-, data- and expert-parallel groups (communication is initialised) and return them
    (for `parallelize` and the optimizer). A group with the same ranks as one already made is that group.
    `sequence_parallel` (default: settings.use_seq_parallel) is False for evaluation and generation, whose lengths
    need not split."""
    made = {}

    def group(kind, ranks):
        if tuple(ranks) not in made:
            made[tuple(ranks)] = _create(kind, ranks)
        return made[tuple(ranks)]
    model_ranks, data_ranks = group_ranks(rank_id, settings)
    expert_ranks, expert_model_ranks, expert_data_ranks = expert_group_ranks(rank_id, settings)
    groups = ParallelGroups(model_parallel=settings.model_parallel, model_rank=model_ranks.index(rank_id),
                            model_group=group("model_parallel", model_ranks),
                            data_parallel=settings.data_parallel, data_rank=data_ranks.index(rank_id),
                            data_group=group("data_parallel", data_ranks),
                            expert_parallel=len(expert_ranks), expert_rank=expert_ranks.index(rank_id),
                            expert_group=group("expert_parallel", expert_ranks),
                            expert_model_group=group("expert_model_parallel", expert_model_ranks),
                            expert_data_group=group("expert_data_parallel", expert_data_ranks),
                            sequence_parallel=settings.use_seq_parallel if sequence_parallel is None
                            else sequence_parallel)
    return groups
