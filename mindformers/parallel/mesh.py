"""Where a rank sits in the parallel mesh, and which pipeline stage holds which weights.

MindSpore orders devices as (stage, data, model): rank = stage * dp * mp + data * mp + model. A mesh is the dict
ParallelSettings.mesh() returns and layout files record: data_parallel, model_parallel, pipeline_stage, and with
mixture-of-experts expert_parallel (> 1 only), which divides data_parallel: a rank's expert index is its data index
modulo expert_parallel.
"""
import re

LAYER_INDEX = re.compile(r"\blayers\.(\d+)\.")
MESH_KEYS = ("data_parallel", "model_parallel", "pipeline_stage")


def mesh_sizes(mesh):
    """(dp, mp, pp) of a mesh dict (missing keys count as 1)."""
    return tuple(int(mesh.get(key, 1)) for key in MESH_KEYS)


def expert_parallel_size(mesh):
    return int(mesh.get("expert_parallel", 1) or 1)


def same_mesh(first, second):
    return mesh_sizes(first) == mesh_sizes(second) and expert_parallel_size(first) == expert_parallel_size(second)


def describe_mesh(mesh):
    text = " ".join(f"{key}={size}" for key, size in zip(MESH_KEYS, mesh_sizes(mesh)))
    experts = expert_parallel_size(mesh)
    return f"{text} expert_parallel={experts}" if experts > 1 else text


def expert_index(rank, mesh):
    """The part of the experts rank `rank` holds."""
    return rank_coordinates(rank, mesh)[1] % expert_parallel_size(mesh)


def rank_coordinates(rank, mesh):
    """rank -> (stage, data, model) indices."""
    dp, mp, _ = mesh_sizes(mesh)
    return rank // (dp * mp), rank % (dp * mp) // mp, rank % mp


def layer_stage(layer, num_layers, stages):
    """Decoder layer i sits on stage i * stages // num_layers: contiguous groups, the earlier stages taking the
    extra layers when the count does not divide."""
    return layer * stages // num_layers


def stage_of(name, num_layers, stages):
    """The stage holding a parameter: its layer's stage, the embedding on the first, the rest (final norm, head)
    on the last."""
    match = LAYER_INDEX.search(name)
    if match:
        return layer_stage(int(match.group(1)), num_layers, stages)
    return 0 if "embedding" in name else stages - 1


def count_layers(names):
    """The number of decoder layers parameters named `names` belong to (1 + the highest layer index)."""
    indices = [int(match.group(1)) for match in map(LAYER_INDEX.search, names) if match]
    return max(indices) + 1 if indices else 1
