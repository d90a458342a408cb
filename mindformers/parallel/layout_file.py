"""The layout (strategy) file saved beside each rank's checkpoints, and the check made when one is loaded.

The file records the mesh a checkpoint was trained under and, for every weight, its global shape and the
dimension split over model_parallel, read from the layers' own declarations (`parameter_layouts`).
Optimizer moments follow the layout of their weight.
"""
import json
import os

from mindformers.checkpoint.atomic import atomic_files
from mindformers.models.modules.layout import parameter_layouts
from mindformers.tools.errors import ConfigError

LAYOUT_FILE = "strategy.json"
FORMAT = "mindformers-layout/1"


def layout_record(network, settings, rank_id, world_size):
    split = parameter_layouts(network)
    params = {p.name: {"shape": list(p.shape), "dtype": str(p.dtype), "split_dim": split.get(p.name)}
              for p in network.get_parameters()}
    return {"format": FORMAT, "mesh": settings.mesh(), "world_size": world_size, "rank": rank_id,
            "parameters": params}


def write_layout_file(folder, record):
    path = os.path.join(folder, LAYOUT_FILE)
    with atomic_files(path) as (temp,):
        with open(temp, "w", encoding="utf-8") as stream:
            json.dump(record, stream, indent=1, sort_keys=True)
    return path


def read_layout_file(path, key="src_strategy_path_or_dir"):
    try:
        with open(path, encoding="utf-8") as stream:
            record = json.load(stream)
    except (OSError, ValueError) as error:
        raise ConfigError(f"{key}: cannot read layout file {path}: {error}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT or "mesh" not in record:
        raise ConfigError(f"{key}: {path} is not a layout file (expected format {FORMAT})")
    return record


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


def describe(mesh):
    return " ".join(f"{key}={mesh.get(key, 1)}" for key in ("data_parallel", "model_parallel", "pipeline_stage"))


def check_checkpoint_strategy(checkpoint_path, settings, auto_trans_ckpt=False, src_strategy=None, rank_id=0,
                              key="load_checkpoint"):
    """A checkpoint saved under another mesh needs auto_trans_ckpt; only whole (unsplit) weights can be
    taken over as they are, so a model-parallel or pipeline source is refused until resharding exists."""
    path = find_layout_file(checkpoint_path, src_strategy, rank_id)
    if path is None:
        return None
    saved = read_layout_file(path)["mesh"]
    current = settings.mesh()
    if {k: saved.get(k, 1) for k in current} == current:
        return saved
    if not auto_trans_ckpt:
        raise ConfigError(f"{key}: {checkpoint_path} was saved under {describe(saved)} ({path}), this run uses "
                          f"{describe(current)}; set auto_trans_ckpt True to transform it on load")
    split = [k for k in ("model_parallel", "pipeline_stage") if max(saved.get(k, 1), current[k]) > 1
             and saved.get(k, 1) != current[k]]
    if split:
        raise ConfigError(f"auto_trans_ckpt: resharding {split[0]} {saved.get(split[0], 1)} -> {current[split[0]]} "
                          f"is not available yet ({checkpoint_path})")
    return saved
