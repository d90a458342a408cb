"""Launching real msrun runs from tests through scripts/msrun_launcher.sh, and reading their logs."""
import os
import socket
import subprocess
import sys

from tests.e2e.helpers import REPO

LAUNCHER = os.path.join(REPO, "scripts", "msrun_launcher.sh")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(command, workers, local=None, node_rank=0, port=None, log_dir=""):
    """Start the launcher with the Python of this test run first on PATH (msrun runs `python`)."""
    env = dict(os.environ, GLOG_v="3", PYTHONWARNINGS="ignore",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    args = ["bash", LAUNCHER, command, str(workers), str(local or workers), "127.0.0.1", str(port or free_port()),
            str(node_rank), log_dir, "True", "120"]
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process, timeout=300):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def logs(log_dir):
    """The tail of every worker log in log_dir, for assertion messages."""
    text = []
    for name in sorted(os.listdir(log_dir)):
        with open(os.path.join(log_dir, name), encoding="utf-8", errors="replace") as stream:
            text.append(f"--- {name}\n" + stream.read()[-3000:])
    return "\n".join(text)


def train_command(config, output, parallel=True, extra=""):
    return (f"run_mindformer.py --config {config} --run_mode train --output_dir {output} --use_parallel {parallel}"
            + extra)
