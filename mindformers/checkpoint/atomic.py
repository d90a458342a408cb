"""Outputs that appear whole or not at all: written under a hidden temporary name, renamed when complete."""
import contextlib
import os
import re
import shutil

TMP_PREFIX = ".tmp-"
_TEMP_OWNER = re.compile(r"\.tmp-(?P<pid>\d+)-")  # temporary names carry the pid of the process writing them


def temp_path_for(path):
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f"{TMP_PREFIX}{os.getpid()}-{name}")


@contextlib.contextmanager
def atomic_files(*paths):
    """Yield temporary paths for `paths`; rename them all into place on success, delete them on any failure."""
    temps = [temp_path_for(path) for path in paths]
    for path in paths:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        yield temps
    except BaseException:
        for temp in temps:
            _remove(temp)
        raise
    for temp, path in zip(temps, paths):
        os.replace(temp, path)


@contextlib.contextmanager
def atomic_folder(path):
    """Yield a temporary folder; on success move its files into `path` (created if needed), else delete it."""
    temp = temp_path_for(path)
    os.makedirs(temp)
    try:
        yield temp
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    os.makedirs(path, exist_ok=True)
    for name in sorted(os.listdir(temp)):
        os.replace(os.path.join(temp, name), os.path.join(path, name))
    os.rmdir(temp)


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def left_by_interrupted_run(name):
    """Whether `name` is one of our temporary names (.tmp-<pid>-...) whose writer is gone: a process that no
    longer runs, or this one (which has not started writing when it looks)."""
    match = _TEMP_OWNER.search(name)
    if match is None:
        return False
    pid = int(match.group("pid"))
    return pid == os.getpid() or not process_alive(pid)


def _remove(path):
    with contextlib.suppress(FileNotFoundError):
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
