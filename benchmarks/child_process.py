"""Running one benchmark side in a fresh child process: its wall time from spawn to exit and its own peak RSS
(wait4's rusage), so neither side's imports or allocations count against the other."""
import os
import subprocess
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_child(argv, cwd=REPO):
    """(wall seconds, peak RSS bytes, stdout, stderr) of a child process; exits with its output if it fails.
    The output goes to temporary files, not pipes: a chatty child would block on a full pipe before wait4 returns."""
    env = dict(os.environ, GLOG_v="3", PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err)  # pylint: disable=consider-using-with
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(f"child failed ({code}): {' '.join(argv)}\n{stdout[-3000:]}\n{stderr[-3000:]}")
    return elapsed, usage.ru_maxrss * 1024, stdout, stderr
