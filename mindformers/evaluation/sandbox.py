"""Running untrusted generated code: a child process in a fresh temporary folder, killed with its whole process
group at a wall-clock limit, under the resource limits and audit hook of sandbox_child.py. The folder (with
everything the program wrote) is removed afterwards."""
import dataclasses
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_child.py")
DEFAULT_TIMEOUT = 5.0                 # seconds of wall clock per program
DEFAULT_MEMORY = 2 << 30              # bytes of address space
OUTPUT_TAIL = 1000                    # characters of the program's stderr kept for the record


@dataclasses.dataclass(frozen=True)
class ExecutionResult:
    passed: bool
    status: str      # "passed", "failed" or "timed out"
    detail: str      # the end of what the program wrote to stderr


def run_untrusted(program, timeout=DEFAULT_TIMEOUT, memory_bytes=DEFAULT_MEMORY, temp_root=None):
    """Run `program` (Python source) once; passed when it runs to the end without raising."""
    workdir = tempfile.mkdtemp(prefix="mf-sandbox-", dir=temp_root)
    try:
        program_path = os.path.join(workdir, "program.py")
        with open(program_path, "w", encoding="utf-8") as stream:
            stream.write(program)
        return _run_child(workdir, program_path, timeout, memory_bytes)
    finally:
        _remove_tree(workdir)


def _run_child(workdir, program_path, timeout, memory_bytes):
    cpu_seconds = int(math.ceil(timeout)) + 1  # a backstop: the wall clock below normally ends it first
    # -I: no environment variables or user site; -S: no site-packages (HumanEval needs the standard library
    # only); -B: no .pyc files written anywhere.
    command = [sys.executable, "-I", "-S", "-B", CHILD, workdir, program_path, str(cpu_seconds), str(memory_bytes)]
    env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
    token = secrets.token_hex(16)  # printed by the child only after the program's last line (sandbox_child.py)
    stdout_path = os.path.join(workdir, "stdout.txt")
    with open(stdout_path, "wb") as out, open(os.path.join(workdir, "stderr.txt"), "wb") as err:
        child = subprocess.Popen(command, cwd=workdir, env=env, stdin=subprocess.PIPE, stdout=out, stderr=err,
                                 start_new_session=True, close_fds=True)
        try:
            try:
                child.stdin.write(f"{token}\n".encode())
                child.stdin.close()
            except BrokenPipeError:
                pass  # the child is already gone; its exit status says why
            code = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            _kill_group(child)
    detail = _tail(os.path.join(workdir, "stderr.txt"))
    if code is None:
        return ExecutionResult(False, "timed out", f"killed after {timeout:g} s")
    if code == 0 and _tail(stdout_path).endswith(token):
        return ExecutionResult(True, "passed", detail)
    if code == 0:
        return ExecutionResult(False, "failed", "the program ended the process before its last line")
    if code < 0:
        detail = f"killed by {signal.Signals(-code).name}" + (f": {detail}" if detail else "")
    return ExecutionResult(False, "failed", detail)


def _kill_group(child):
    """SIGKILL the child's process group (it leads its own session), then reap the child."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    child.wait()


def _tail(path):
    with open(path, "rb") as stream:
        stream.seek(0, os.SEEK_END)
        stream.seek(max(stream.tell() - OUTPUT_TAIL, 0))
        return stream.read().decode("utf-8", "replace").strip()


def _remove_tree(path):
    """Remove the work folder, also when the program left folders in it without permissions (a mkdir mode)."""
    os.chmod(path, 0o700)
    for folder, subfolders, _ in os.walk(path):  # top-down: each folder is opened up before it is entered
        for name in subfolders:
            target = os.path.join(folder, name)
            if not os.path.islink(target):
                os.chmod(target, 0o700)
    shutil.rmtree(path)
