"""The communication a pipeline stage needs beyond its data- and model-parallel groups, built from AllReduce.

MindSpore's CPU backend has no Send/Receive, but it all-reduces over sub-groups. A rank's pipeline ranks are the
ranks at its place (data and model-parallel index) in every stage. Three kinds of group join them:

- boundary b: the ranks of stage b and b + 1; a transfer is an all-reduce in which the receiver contributes zeros;
- tied: the first and the last stage, which sum the gradients of a word embedding both hold;
- pipeline: every stage, which sum the loss (only the last stage has it) and the squared gradient norms.

Groups are named by their keys, ("boundary", b), "tied" and "pipeline"; `CollectiveTransport` all-reduces over the
real groups, and a test can drive the same stage programs with an in-process transport instead.
"""
from mindspore import nn, ops

from mindformers.parallel.mesh import rank_coordinates

PIPELINE, TIED = "pipeline", "tied"
_CREATED = set()


def boundary(index):
    return ("boundary", index)


def pipeline_ranks(rank_id, settings):
    """The ranks at `rank_id`'s place in every stage, by stage."""
    dp, mp = settings.data_parallel, settings.model_parallel
    _, data, model = rank_coordinates(rank_id, settings.mesh())
    return [stage * dp * mp + data * mp + model for stage in range(settings.pipeline_stage)]


def group_members(key, stages):
    """The stages a group joins."""
    if key == PIPELINE:
        return tuple(range(stages))
    if key == TIED:
        return (0, stages - 1)
    return (key[1], key[1] + 1)


def stage_group_keys(stage, stages, tied):
    keys = [boundary(b) for b in (stage - 1, stage) if 0 <= b < stages - 1] + [PIPELINE]
    if tied and stage in (0, stages - 1):
        keys.append(TIED)
    return keys


def create_pipeline_groups(rank_id, settings, tied):
    """{key: group name} of the pipeline groups `rank_id` belongs to (communication is initialised); keys over the
    same ranks share one group."""
    from mindspore.communication import create_group  # pylint: disable=import-outside-toplevel
    ranks = pipeline_ranks(rank_id, settings)
    stage = ranks.index(rank_id)
    names, made = {}, {}
    for key in stage_group_keys(stage, settings.pipeline_stage, tied):
        members = tuple(ranks[s] for s in group_members(key, settings.pipeline_stage))
        if members not in made:
            made[members] = "pipeline_" + "_".join(str(rank) for rank in members)
            if made[members] not in _CREATED:  # a process building a second train step reuses its groups
                create_group(made[members], list(members))
                _CREATED.add(made[members])
        names[key] = made[members]
    return names


class _AllReduce(nn.Cell):
    def __init__(self, group):
        super().__init__()
        self.all_reduce = ops.AllReduce(group=group)

    def construct(self, x):
        return self.all_reduce(x)


class CollectiveTransport:
    """all_reduce(key, tensor): the sum over the group `key` names, through MindSpore's AllReduce."""

    def __init__(self, group_names):
        self.cells = {key: _AllReduce(name) for key, name in group_names.items()}

    def all_reduce(self, key, tensor):
        return self.cells[key](tensor)
