"""Running the real CLIs in subprocesses, as a user would."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_cli(args, cwd=None, timeout=600):
    env = dict(os.environ, GLOG_v="3", PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable] + [str(a) for a in args], cwd=cwd or REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def read_metrics(output_dir):
    with open(os.path.join(output_dir, "log", "train_metrics.jsonl"), encoding="utf-8") as stream:
        return [json.loads(line) for line in stream]


def assert_one_line_error(result, *fragments):
    """A user error: exit code 2, no traceback, one line on stderr naming what is wrong."""
    assert result.returncode == 2, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
