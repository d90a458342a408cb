"""Saving and finding checkpoints: atomic, verifiable writes, per-rank folders, newest intact first, shape checks
on load (integrity.py says how a save is made verifiable and how a load verifies it)."""
import contextlib
import logging
import os
import re

import mindspore as ms
from mindspore.common import dtype as mstype

from mindformers.checkpoint.atomic import TMP_PREFIX, temp_path_for
from mindformers.checkpoint.ckpt_load import NotReadHere, load_ckpt
from mindformers.checkpoint.integrity import (DamagedCheckpoint, fsync_file, fsync_folder, manifest_path,
                                              remove_quietly, verify_checkpoint, write_manifest)
from mindformers.tools.errors import ConfigError, RunFault, out_of_space_reason

logger = logging.getLogger("mindformers")
RANK_FOLDER = re.compile(r"^rank_(\d+)$")
_just_verified = {}  # path -> its stat when newest_intact verified it, so read_checkpoint does not hash it twice

CKPT_NAME = re.compile(r"^(?P<prefix>.+)_rank_(?P<rank>\d+)-(?P<epoch>\d+)_(?P<step>\d+)\.(ckpt|safetensors)$")


def rank_dir(output_dir, rank_id):
    return os.path.join(output_dir, "checkpoint", f"rank_{rank_id}")


def checkpoint_name(prefix, rank_id, epoch, step, fmt="ckpt"):
    return f"{prefix}_rank_{rank_id}-{epoch}_{step}.{fmt}"


@contextlib.contextmanager
def quiet_mindspore_log():
    """MindSpore logs a CRITICAL line of its own when a save fails; the error we raise says it in one line."""
    from mindspore import log  # pylint: disable=import-outside-toplevel
    ms_logger = log._get_logger()  # pylint: disable=protected-access
    level = ms_logger.level
    ms_logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        ms_logger.setLevel(level)


# Parameters that are working copies rebuilt from the weights before every use (the parallel optimizer's slices,
# mindformers/parallel/optimizer_shard.py): never saved, so checkpoints hold the same names under every setting.
WORKING_COPY_PREFIX = "optimizer_shard."


def saved(name):
    return not name.startswith(WORKING_COPY_PREFIX)


def save_checkpoint_atomic(save_obj, path, append_dict=None, fmt="ckpt"):
    """Write a verifiable checkpoint at `path`: data (with MindSpore's CRC32) under a hidden temporary name, synced;
    then its manifest `<path>.sha256`; then the rename that makes it visible. A crash at any point leaves the
    checkpoints before it as they were; a full disk is a one-line RunFault with nothing half-written left."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temp = temp_path_for(path)
    leftovers = (temp, os.path.splitext(temp)[0] + ".tmp", manifest_path(path))  # .tmp: MindSpore's own temp name
    try:
        with quiet_mindspore_log():
            ms.save_checkpoint(save_obj, temp, append_dict=append_dict, format=fmt, crc_check=True, choice_func=saved)
        fsync_file(temp)
        write_manifest(path, data_path=temp)
        os.replace(temp, path)
        fsync_folder(folder)
    except BaseException as error:
        for leftover in leftovers:
            remove_quietly(leftover)
        reason = out_of_space_reason(error)
        if reason is not None:
            raise RunFault(f"cannot save checkpoint {path}: {reason}; the partial file was removed") from None
        raise


def remove_checkpoint(path):
    """Delete a checkpoint, then its manifest (an interrupted removal leaves a manifest alone, which is cleaned up
    like any other leftover)."""
    remove_quietly(path)
    remove_quietly(manifest_path(path))


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
    return newest_intact(folder, rank_id, key)


def _stat_key(path):
    stat = os.stat(path)
    return stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def sibling_rank_folders(folder, rank_id):
    """{rank: folder} of the other rank_<k>/ folders beside `folder` (when it is rank_<rank_id>/) that hold
    checkpoints: the ranks that must have finished a save for it to be resumed from."""
    if os.path.basename(os.path.normpath(folder)) != f"rank_{rank_id}":
        return {}
    parent = os.path.dirname(os.path.normpath(folder))
    siblings = {}
    for name in os.listdir(parent):
        match = RANK_FOLDER.match(name)
        if match and int(match.group(1)) != rank_id and list_checkpoints(os.path.join(parent, name)):
            siblings[int(match.group(1))] = os.path.join(parent, name)
    return siblings


def same_save_stem(path, rank):
    """<prefix>_rank_<rank>-<epoch>_<step>: the name rank `rank` gives the save `path` belongs to (None when the
    name does not follow the pattern)."""
    match = CKPT_NAME.match(os.path.basename(path))
    if match is None:
        return None
    return f"{match.group('prefix')}_rank_{rank}-{match.group('epoch')}_{match.group('step')}"


def unfinished_by(path, siblings):
    """Why the save `path` belongs to cannot be resumed: the sibling ranks that have no file of it ('' when all
    do, or when the name does not tell)."""
    missing = []
    for rank, folder in sorted(siblings.items()):
        stem = same_save_stem(path, rank)
        if stem is not None and not any(os.path.splitext(os.path.basename(other))[0] == stem
                                        for other in list_checkpoints(folder)):
            missing.append(f"rank_{rank} has no {stem}.* (the same save as {os.path.basename(path)})")
    return "; ".join(missing)


def newest_intact(folder, rank_id=0, key="load_checkpoint"):
    """The newest checkpoint of `folder` that verifies and that every other rank folder beside it also saved; each
    newer one passed over is logged with the reason. A rank of a distributed run whose own newest save is damaged
    stops instead: the other ranks cannot know it, and all must resume from one save."""
    siblings = sibling_rank_folders(folder, rank_id)
    skipped = []
    for path in reversed(list_checkpoints(folder)):
        unfinished = unfinished_by(path, siblings)
        if unfinished:
            skipped.append((path, unfinished))
            continue
        try:
            verify_checkpoint(path, key)
        except DamagedCheckpoint as error:
            if siblings:
                raise ConfigError(f"{error}; the ranks of a distributed run resume from one save: name an older one "
                                  "with --resume_training <file name>") from None
            skipped.append((path, f"damaged: {error.reason}"))
            continue
        _just_verified[path] = _stat_key(path)
        for passed, reason in skipped:
            logger.warning("%s: skipping %s (%s)", key, passed, reason)
        if skipped:
            logger.warning("%s: taking %s, the newest intact checkpoint", key, path)
        return path
    reasons = "; ".join(f"{os.path.basename(path)}: {reason}" for path, reason in skipped)
    raise ConfigError(f"{key}: no intact checkpoint in {folder} ({reasons})")


def names_a_file(resume_training):
    return isinstance(resume_training, str) and resume_training not in ("", "True", "False")


def same_save(reference, rank, folder, key="load_checkpoint"):
    """The file of rank `rank` in `folder` written by the same save as the file named `reference` (same prefix,
    epoch and step in <prefix>_rank_<r>-<epoch>_<step>.ckpt); the newest when the name does not follow the pattern."""
    wanted = same_save_stem(reference, rank)
    candidates = list_checkpoints(folder)
    if not candidates:
        raise ConfigError(f"{key}: {folder} holds no checkpoint file (.ckpt or .safetensors)")
    if wanted is None:
        return candidates[-1]
    for path in candidates:
        if os.path.splitext(os.path.basename(path))[0] == wanted:
            return path
    raise ConfigError(f"{key}: {folder} has no {wanted}.* (the same save as {os.path.basename(reference)}); the "
                      "ranks of a distributed checkpoint must come from one save")


def read_checkpoint(path, key="load_checkpoint"):
    """The values of one checkpoint file ({name: Tensor}, strings as str), verified (integrity.py): a .ckpt is
    checked while it is read, in one pass (ckpt_load.py); safetensors are checked first."""
    if not os.path.isfile(path):
        raise ConfigError(f"{key}: checkpoint not found: {path}")
    verified = _just_verified.pop(path, None) == _stat_key(path)
    if not path.endswith(".safetensors"):
        try:
            return load_ckpt(path, key, verified)
        except NotReadHere:  # verified by now; MindSpore's reader builds the values ours does not
            verified = True
    if not verified:
        verify_checkpoint(path, key)
    try:
        return ms.load_checkpoint(path, format="safetensors" if path.endswith(".safetensors") else "ckpt")
    except (RuntimeError, ValueError, OSError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"{key}: cannot read checkpoint {path}: {detail}") from None


def same_kind(dtype, other):
    """Both floating point or both integer: the dtype changes a load makes (MindSpore's load_param_into_net rule)."""
    return any(dtype in kinds and other in kinds for kinds in (mstype.float_type, mstype.int_type + mstype.uint_type))


def load_weights(cell, param_dict, path, require_all=True, key="load_checkpoint"):
    """Load parameters into `cell` after checking names, shapes and dtypes, so a mismatch is one clear line. Each
    parameter takes its tensor's memory as it is (Parameter.set_data shares it): no copy of the weights is made."""
    expected = {p.name: p for p in cell.get_parameters()}
    for name, param in expected.items():
        if name not in param_dict:
            if require_all:
                raise ConfigError(f"{key}: {path} has no tensor '{name}' (expected shape {tuple(param.shape)})")
            continue
        value = param_dict[name]
        got = tuple(value.shape)
        if got != tuple(param.shape):
            raise ConfigError(f"{key}: {path}: tensor '{name}' has shape {got}, the model expects "
                              f"{tuple(param.shape)}")
        if value.dtype != param.dtype and not same_kind(value.dtype, param.dtype):
            raise ConfigError(f"{key}: {path}: tensor '{name}' is {value.dtype}, the model expects {param.dtype}")
    usable = [name for name in param_dict if name in expected]
    for name in usable:
        expected[name].set_data(param_dict[name])  # a float32 tensor into a float16 model is cast
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
