"""Checkpoints that cannot lie: every save is verifiable, and nothing is loaded before it is verified.

A save writes its checkpoint under a hidden temporary name (MindSpore adds a CRC32 trailer to .ckpt files, to
safetensors metadata), syncs it to disk, then writes the manifest `<name>.sha256` beside where the checkpoint
will be (sha256sum's format: `sha256sum -c <name>.sha256` checks it by hand), and only then renames the
checkpoint into place. So a checkpoint of ours is never visible without its manifest; a manifest whose checkpoint
is missing, and every temporary file, are what an interrupted save leaves, and are removed at the next start.

Loading verifies (IntegrityCheck): with a manifest, the file's sha256 must match it; without one, the CRC32
trailer MindSpore wrote must, when there is one; a checkpoint with neither (written by an earlier version of this
project, converted, or brought from MindFormers or elsewhere) loads with a warning that it cannot be verified. A
.ckpt is checked as it is loaded, in one pass, and nothing read is used before the check has passed (ckpt_load.py).
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


class DamagedCheckpoint(ConfigError):
    """A checkpoint whose bytes are not the ones that were saved."""

    def __init__(self, path, key, reason):
        super().__init__(f"{key}: {path}: damaged checkpoint ({reason}); not loaded")
        self.reason = reason


class IntegrityCheck:
    """How one checkpoint file is verified, fed its bytes in file order by whoever reads them (verify_checkpoint, or
    a loader that checks while it reads, so the file is read once): against its manifest's sha256 when there is
    one, else against its CRC32 trailer, else not at all (a warning says so). A manifest that does not list the file
    raises DamagedCheckpoint here, before anything is read; `finish` raises it when the bytes fed do not match."""

    def __init__(self, path, key="load_checkpoint", warn=True):
        self.path, self.key = path, key
        self.manifest = manifest_path(path)
        self.sha256, self.crc, self.crc_left = None, 0, 0
        if os.path.exists(self.manifest):
            entries = read_manifest(self.manifest)
            name = os.path.basename(path)
            if entries is None or name not in entries:
                raise self.damaged(f"its manifest {os.path.basename(self.manifest)} is unreadable or does not list "
                                   "it")
            self.kind, self.expected, self.sha256 = VERIFIED, entries[name], hashlib.sha256()
            return
        self.expected = crc_trailer(path)
        if self.expected is not None:
            self.kind, self.crc_left = CRC, os.path.getsize(path) - CRC_TRAILER  # the trailer itself is not covered
            return
        self.kind = UNVERIFIED
        if warn:
            logger.warning("%s: %s has no manifest (%s) and no CRC, so it cannot be verified (written by an earlier "
                           "version, converted, or from another tool); loading it as it is", key, path,
                           os.path.basename(self.manifest))

    def damaged(self, reason):
        return DamagedCheckpoint(self.path, self.key, reason)

    def update(self, data):
        """The next bytes of the file."""
        if self.sha256 is not None:
            self.sha256.update(data)
        elif self.crc_left > 0:
            covered = data if len(data) <= self.crc_left else memoryview(data)[:self.crc_left]
            self.crc = binascii.crc32(covered, self.crc)
            self.crc_left -= len(covered)

    def update_to_end(self, stream):
        """Feed the rest of an open file, from where it stands to its end."""
        if self.kind == UNVERIFIED:
            return
        for chunk in iter(lambda: stream.read(_HASH_CHUNK), b""):
            self.update(chunk)

    def finish(self):
        """How the file was verified (VERIFIED, CRC or UNVERIFIED), once every byte was fed."""
        if self.kind == VERIFIED and self.sha256.hexdigest() != self.expected:
            raise self.damaged(f"sha256 differs from {os.path.basename(self.manifest)}: the file changed after it "
                               "was saved")
        if self.kind == CRC and (self.crc_left > 0 or self.crc != self.expected):
            raise self.damaged("CRC32 differs from the one saved in the file")
        return self.kind


def verify_checkpoint(path, key="load_checkpoint", warn=True):
    """Check `path` before it is used: against its manifest, else against its CRC32 trailer; returns how it was
    verified (VERIFIED, CRC or UNVERIFIED: neither exists, a warning says so). A mismatch raises DamagedCheckpoint,
    one line naming the file."""
    check = IntegrityCheck(path, key, warn)
    with open(path, "rb") as stream:
        check.update_to_end(stream)
    return check.finish()


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

