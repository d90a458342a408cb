"""The server's child processes (FastChat's controller and API server): started with their output in log files,
waited for over HTTP, watched, and stopped together."""
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from mindformers.tools.errors import MindFormerUserError

_PR_SET_PDEATHSIG = 1


class ServeError(MindFormerUserError):
    """A part of the server failed to start or stopped: one line, exit code 1."""

    exit_code = 1


def free_port():
    """A port on 127.0.0.1 that nothing listens on now (for the parts only the server itself talks to)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_error(host, port):
    """None when (host, port) can be listened on, else why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        return error.strerror or str(error)
    return None


def http_json(url, payload=None, timeout=5.0):
    """GET (payload None) or POST JSON; the decoded answer, or None when nothing answers (yet)."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read().decode() or "null")
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError, OSError):
        return None


def _die_with_parent():
    """Runs in the child before exec: the kernel sends it SIGTERM if the server process dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ChildProcesses:
    """Children in their own sessions (a terminal's Ctrl-C reaches the server, which stops them in order)."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.children = []  # (name, Popen, log path)

    def start(self, name, argv, env=None):
        log_path = os.path.join(self.log_dir, f"{name}.log")
        with open(log_path, "ab") as log:
            process = subprocess.Popen([sys.executable] + argv, stdout=log, stderr=subprocess.STDOUT,  # noqa: S603
                                       stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                       preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        self.children.append((name, process, log_path))
        return process

    def check(self):
        """A one-line error when a child has exited."""
        for name, process, log_path in self.children:
            code = process.poll()
            if code is not None:
                raise ServeError(f"{name} exited with code {code}; its log: {log_path}{last_line(log_path)}")

    def wait_for(self, what, ready, stopping, timeout):
        """Poll `ready()` until it is true; an error when a child exits, `stopping` is set or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while not ready():
            self.check()
            if stopping.is_set():
                raise KeyboardInterrupt
            if time.monotonic() > deadline:
                raise ServeError(f"{what} did not come up within {timeout:.0f} s (logs in {self.log_dir})")
            time.sleep(0.1)

    def stop(self, grace=10.0):
        for _, process, _ in reversed(self.children):
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + grace
        for _, process, _ in reversed(self.children):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def last_line(path):
    """'; last line: ...' of a log file, or ''."""
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            lines = [line.strip() for line in stream if line.strip()]
    except OSError:
        return ""
    return f"; last line: {lines[-1][:300]}" if lines else ""
