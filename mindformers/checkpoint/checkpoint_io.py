"""Saving and finding checkpoints: atomic writes, per-rank folders, newest-first lookup, shape checks on load."""
import os
import re

import mindspore as ms

from mindformers.checkpoint.atomic import TMP_PREFIX, atomic_files
from mindformers.tools.errors import ConfigError

CKPT_NAME = re.compile(r"^(?P<prefix>.+)_rank_(?P<rank>\d+)-(?P<epoch>\d+)_(?P<step>\d+)\.(ckpt|safetensors)$")


def rank_dir(output_dir, rank_id):
    return os.path.join(output_dir, "checkpoint", f"rank_{rank_id}")


def checkpoint_name(prefix, rank_id, epoch, step, fmt="ckpt"):
    return f"{prefix}_rank_{rank_id}-{epoch}_{step}.{fmt}"


def save_checkpoint_atomic(save_obj, path, append_dict=None, fmt="ckpt"):
    """Write to a hidden temporary name beside `path`, then rename: a crash never leaves a partial checkpoint."""
    with atomic_files(path) as (tmp_path,):
        ms.save_checkpoint(save_obj, tmp_path, append_dict=append_dict, format=fmt)


def list_checkpoints(directory):
    """Checkpoint files in `directory`, oldest first (by modification time, then name)."""
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        if name.startswith(TMP_PREFIX) or not name.endswith((".ckpt", ".safetensors")):
            continue
        path = os.path.join(directory, name)
        found.append((os.path.getmtime(path), name, path))
    found.sort()
    return [path for _, _, path in found]


def resolve_checkpoint(load_checkpoint, rank_id=0, resume_training=None, key="load_checkpoint"):
    """A file, a folder of checkpoints, or an output folder holding rank_<r>/ -> one checkpoint file.

    resume_training may name a file inside the folder (MindFormers' `--resume_training NAME.ckpt`).
    """
    path = os.path.expanduser(str(load_checkpoint))
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise ConfigError(f"{key}: checkpoint not found: {load_checkpoint}")
    candidates = [os.path.join(path, f"rank_{rank_id}"), os.path.join(path, "checkpoint", f"rank_{rank_id}"), path]
    folder = next((c for c in candidates if list_checkpoints(c)), None)
    if folder is None:
        raise ConfigError(f"{key}: no .ckpt files in {load_checkpoint} (looked in rank_{rank_id}/ and the folder)")
    if names_a_file(resume_training):
        named = os.path.join(folder, resume_training)
        if os.path.isfile(named):
            return named
        if CKPT_NAME.match(resume_training) is None:
            raise ConfigError(f"resume_training: no checkpoint named {resume_training} in {folder}")
        return same_save(resume_training, rank_id, folder, "resume_training")  # another rank's name for that save
    return list_checkpoints(folder)[-1]


def names_a_file(resume_training):
    return isinstance(resume_training, str) and resume_training not in ("", "True", "False")


def same_save(reference, rank, folder, key="load_checkpoint"):
    """The file of rank `rank` in `folder` written by the same save as the file named `reference` (same prefix,
    epoch and step in <prefix>_rank_<r>-<epoch>_<step>.ckpt); the newest when the name does not follow the pattern."""
    match = CKPT_NAME.match(os.path.basename(reference))
    candidates = list_checkpoints(folder)
    if not candidates:
        raise ConfigError(f"{key}: {folder} holds no checkpoint file (.ckpt or .safetensors)")
    if match is None:
        return candidates[-1]
    wanted = f"{match.group('prefix')}_rank_{rank}-{match.group('epoch')}_{match.group('step')}"
    for path in candidates:
        if os.path.splitext(os.path.basename(path))[0] == wanted:
            return path
    raise ConfigError(f"{key}: {folder} has no {wanted}.* (the same save as {os.path.basename(reference)}); the "
                      "ranks of a distributed checkpoint must come from one save")


def read_checkpoint(path, key="load_checkpoint"):
    try:
        return ms.load_checkpoint(path, format="safetensors" if path.endswith(".safetensors") else "ckpt")
    except (RuntimeError, ValueError, OSError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"{key}: cannot read checkpoint {path}: {detail}") from None


def load_weights(cell, param_dict, path, require_all=True, key="load_checkpoint"):
    """Load parameters into `cell` after checking names and shapes, so a mismatch is one clear line."""
    expected = {p.name: p for p in cell.get_parameters()}
    for name, param in expected.items():
        if name not in param_dict:
            if require_all:
                raise ConfigError(f"{key}: {path} has no tensor '{name}' (expected shape {tuple(param.shape)})")
            continue
        got = tuple(param_dict[name].shape)
        if got != tuple(param.shape):
            raise ConfigError(f"{key}: {path}: tensor '{name}' has shape {got}, the model expects "
                              f"{tuple(param.shape)}")
    usable = {name: value for name, value in param_dict.items() if name in expected}
    ms.load_param_into_net(cell, usable, strict_load=False)
    # generation's transposed weight copies must follow; imported here: generation imports the models, which
    # import this module
    from mindformers.generation.transposed_weights import weights_may_change  # pylint: disable=import-outside-toplevel
    weights_may_change(cell)
    return sorted(set(expected) - set(usable))


def scalar(param_dict, name, default=0):
    value = param_dict.get(name)
    if value is None:
        return default
    return value.asnumpy().item() if hasattr(value, "asnumpy") else value
