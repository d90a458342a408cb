"""Running one benchmark side in a fresh child process: its wall time from spawn to exit and its own peak RSS
(wait4's rusage), so neither side's imports or allocations count against the other."""
import os
import subprocess
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_bytes(pid):
    """The current resident set of a live process (Linux /proc), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def kill_above(process, limit_bytes, stopped):
    """Kills `process` once its RSS passes limit_bytes (polled twice a second until `stopped` is set): on a shared
    machine a run that would exhaust memory is stopped before the kernel's OOM killer picks a victim."""
    while not stopped.wait(0.5):
        if rss_bytes(process.pid) > limit_bytes:
            process.kill()
            return


def run_child(argv, cwd=REPO, rss_limit_bytes=None):
    """(wall seconds, peak RSS bytes, stdout, stderr) of a child process; exits with its output if it fails (or, with
    rss_limit_bytes, once its RSS passes that limit: it is killed).
    The output goes to temporary files, not pipes: a chatty child would block on a full pipe before wait4 returns."""
    env = dict(os.environ, GLOG_v="3", PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err)  # pylint: disable=consider-using-with
        stopped = threading.Event()
        if rss_limit_bytes:
            threading.Thread(target=kill_above, args=(process, rss_limit_bytes, stopped), daemon=True).start()
        _, status, usage = os.wait4(process.pid, 0)
        stopped.set()
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
        elapsed = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    code = process.returncode
    if code and rss_limit_bytes and usage.ru_maxrss * 1024 > rss_limit_bytes:
        raise SystemExit(f"child stopped at {usage.ru_maxrss / 2 ** 20:.1f} GiB RSS (limit "
                         f"{rss_limit_bytes / 2 ** 30:.1f} GiB): {' '.join(argv)}")
    if code:
        raise SystemExit(f"child failed ({code}): {' '.join(argv)}\n{stdout[-3000:]}\n{stderr[-3000:]}")
    return elapsed, usage.ru_maxrss * 1024, stdout, stderr
