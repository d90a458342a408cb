"""Checkpoints that cannot lie: every save is verifiable, and nothing is loaded before it is verified.

A save writes its checkpoint under a hidden temporary name (MindSpore adds a CRC32 trailer to .ckpt files, to
safetensors metadata), syncs it to disk, then writes the manifest `<name>.sha256` beside where the checkpoint
will be (sha256sum's format: `sha256sum -c <name>.sha256` checks it by hand), and only then renames the
checkpoint into place. So a checkpoint of ours is never visible without its manifest; a manifest whose checkpoint
is missing, and every temporary file, are what an interrupted save leaves, and are removed at the next start.

Loading verifies first: with a manifest, the file's sha256 must match it; without one, MindSpore checks the CRC32
trailer when there is one; a checkpoint with neither (written by an earlier version of this project, converted,
or brought from MindFormers or elsewhere) loads with a warning that it cannot be verified.
"""
import binascii
import hashlib
import logging
import os

from mindformers.checkpoint.atomic import TMP_PREFIX, left_by_interrupted_run
from mindformers.tools.errors import ConfigError

logger = logging.getLogger("mindformers")

MANIFEST_SUFFIX = ".sha256"
CRC_TRAILER = 17  # MindSpore's .ckpt CRC: b"crc_num" + 10 bytes, at the end of the file
_HASH_CHUNK = 16 << 20

VERIFIED, CRC, UNVERIFIED = "sha256", "crc32", "unverified"


def manifest_path(checkpoint_path):
    return checkpoint_path + MANIFEST_SUFFIX


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_file(path):
    with open(path, "rb") as stream:
        os.fsync(stream.fileno())


def fsync_folder(folder):
    """Make renames and removals in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def write_manifest(checkpoint_path, data_path=None, digest=None):
    """Write `<checkpoint_path>.sha256` for the bytes now at `data_path` (default: the checkpoint itself; or their
    known `digest`), under a temporary name then renamed, synced. Returns the manifest's path."""
    digest = digest or file_sha256(data_path or checkpoint_path)
    path = manifest_path(checkpoint_path)
    folder, name = os.path.split(os.path.abspath(path))
    temp = os.path.join(folder, f"{TMP_PREFIX}{os.getpid()}-{name}")
    try:
        with open(temp, "w", encoding="utf-8") as stream:
            stream.write(f"{digest}  {os.path.basename(checkpoint_path)}\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        remove_quietly(temp)
        raise
    return path


def read_manifest(path):
    """{file name: sha256} from a manifest; None when it is not one (a damaged manifest)."""
    try:
        with open(path, encoding="utf-8") as stream:
            lines = [line.rstrip("\n") for line in stream if line.strip()]
    except (OSError, UnicodeDecodeError):
        return None
    entries = {}
    for line in lines:
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name or any(c not in "0123456789abcdef" for c in digest):
            return None
        entries[name.lstrip("*")] = digest
    return entries or None


def crc_trailer(path):
    """The CRC32 MindSpore appended to a .ckpt saved with crc_check, or None when the file has none."""
    if path.endswith(".safetensors"):
        return None  # safetensors keep theirs in the metadata; the manifest covers those files
    with open(path, "rb") as stream:
        stream.seek(0, os.SEEK_END)
        if stream.tell() < CRC_TRAILER:
            return None
        stream.seek(-CRC_TRAILER, os.SEEK_END)
        trailer = stream.read(CRC_TRAILER)
    return int.from_bytes(trailer[7:], "big") if trailer[:7] == b"crc_num" else None


def file_crc32(path, length):
    crc = 0
    with open(path, "rb") as stream:
        while length > 0:
            chunk = stream.read(min(_HASH_CHUNK, length))
            if not chunk:
                break
            crc = binascii.crc32(chunk, crc)
            length -= len(chunk)
    return crc


class DamagedCheckpoint(ConfigError):
    """A checkpoint whose bytes are not the ones that were saved."""

    def __init__(self, path, key, reason):
        super().__init__(f"{key}: {path}: damaged checkpoint ({reason}); not loaded")
        self.reason = reason


def verify_checkpoint(path, key="load_checkpoint", warn=True):
    """Check `path` before it is used: against its manifest, else against its CRC32 trailer; returns how it was
    verified (VERIFIED, CRC or UNVERIFIED: neither exists, a warning says so). A mismatch raises DamagedCheckpoint,
    one line naming the file."""
    manifest = manifest_path(path)
    if os.path.exists(manifest):
        entries = read_manifest(manifest)
        name = os.path.basename(path)
        if entries is None or name not in entries:
            raise DamagedCheckpoint(path, key, f"its manifest {os.path.basename(manifest)} is unreadable or does not "
                                               "list it")
        if file_sha256(path) != entries[name]:
            raise DamagedCheckpoint(path, key, f"sha256 differs from {os.path.basename(manifest)}: the file changed "
                                               "after it was saved")
        return VERIFIED
    expected_crc = crc_trailer(path)
    if expected_crc is not None:
        if file_crc32(path, os.path.getsize(path) - CRC_TRAILER) != expected_crc:
            raise DamagedCheckpoint(path, key, "CRC32 differs from the one saved in the file")
        return CRC
    if warn:
        logger.warning("%s: %s has no manifest (%s) and no CRC, so it cannot be verified (written by an earlier "
                       "version, converted, or from another tool); loading it as it is", key, path,
                       os.path.basename(manifest))
    return UNVERIFIED


def remove_quietly(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def remove_interrupted_saves(folder):
    """Delete what interrupted saves left in `folder`: temporary files of processes that are gone (or of this one,
    which has not started saving yet) and manifests without their checkpoint. Returns the names removed."""
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith(TMP_PREFIX):
            if not left_by_interrupted_run(name):
                continue  # another live process is writing here
        elif not (name.endswith(MANIFEST_SUFFIX) and not os.path.exists(path[:-len(MANIFEST_SUFFIX)])):
            continue
        if os.path.isfile(path):
            remove_quietly(path)
            removed.append(name)
    if removed:
        fsync_folder(folder)
        logger.info("removed what interrupted saves left in %s: %s", folder, ", ".join(removed))
    return removed

