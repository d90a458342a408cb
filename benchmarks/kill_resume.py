"""kill -9 at random points of real training runs, resuming after each, against one uninterrupted run.

    python benchmarks/kill_resume.py                 # 20 kill points (a few minutes on 2 cores)
    python benchmarks/kill_resume.py --kills 3       # quicker

A tiny Llama trains 2 epochs on the shipped sample text (checkpoints every 2 steps, keeping 3). Each run of a chain
is started with --resume_training True when a checkpoint exists and is killed with SIGKILL at a point drawn in turn
from four kinds: any moment of the process's life (startup and compilation included), a moment while it trains,
inside a save while MindSpore writes the data, and inside a save once the data is written (while it is hashed and
its manifest written, before the rename that makes it visible). After each kill the script notes the newest
complete save; the next run that gets to training must say it resumes from exactly that step and must have removed
every temporary file the kills before it left. A chain ends when a run finishes; its final weights must equal the
uninterrupted run's bit for bit. Prints one line per kill and the totals; exit status 1 when any check failed.
"""
import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("GLOG_v", "3")

SAVE = re.compile(r"^k_rank_0-(\d+)_(\d+)\.ckpt$")
STEP = re.compile(r"\(global (\d+)/(\d+)\)")
TRAINING = re.compile(r"\[INFO\] training ")  # logged once the checkpoint is restored, before the first step


def prepare(folder):
    """Tokenizer, MindRecord rows and the run's YAML, built from the shipped sample text."""
    import yaml  # pylint: disable=import-outside-toplevel
    from mindformers.tools.dataset_preprocess.llama import llama_preprocess  # pylint: disable=import-outside-toplevel
    from mindformers.tools.tokenizer_training import train_sentencepiece  # pylint: disable=import-outside-toplevel
    sample = os.path.join(ROOT, "datasets", "sample", "python_docs.txt")
    model = train_sentencepiece([sample], os.path.join(folder, "tokenizer"), 600, num_threads=2)
    text = os.path.join(folder, "text.txt")
    with open(sample, encoding="utf-8") as source, open(text, "w", encoding="utf-8") as target:
        target.write(source.read()[:16000])
    data = os.path.join(folder, "data.mindrecord")
    llama_preprocess.main(["--input_glob", text, "--model_file", model, "--seq_length", "32", "--output_file", data])
    config = {
        "base_config": [os.path.join(ROOT, "configs", "llama2", "pretrain_llama2_tiny.yaml")], "seed": 42,
        "context": {"mode": 0}, "processor": {"tokenizer": {"vocab_file": model}},
        "model": {"model_config": dict(vocab_size=600, seq_length=32, num_layers=1, hidden_size=32, num_heads=2,
                                       n_kv_heads=2, intermediate_size=64)},
        "runner_config": {"epochs": 2, "batch_size": 8}, "train_dataset": {"data_loader": {"dataset_dir": data}},
        "callbacks": [{"type": "MFLossMonitor", "per_print_times": 1},
                      {"type": "CheckpointMonitor", "prefix": "k", "save_checkpoint_steps": 2,
                       "keep_checkpoint_max": 3}]}
    path = os.path.join(folder, "run.yaml")
    with open(path, "w", encoding="utf-8") as stream:
        yaml.safe_dump(config, stream)
    return path


def saves(folder):
    """(epoch, step) -> path of the complete saves of a rank folder."""
    found = {}
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        match = SAVE.match(name)
        if match:
            found[(int(match.group(1)), int(match.group(2)))] = os.path.join(folder, name)
    return found


def temporaries(folder):
    return sorted(n for n in os.listdir(folder) if n.startswith(".tmp-")) if os.path.isdir(folder) else []


def global_step(path):
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    return int(ms.load_checkpoint(path, choice_func=lambda name: name == "step_num")["step_num"].asnumpy())


def start(config, output, resume):
    command = [sys.executable, "run_mindformer.py", "--config", config, "--output_dir", output]
    if resume:
        command += ["--resume_training", "True"]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1, env=dict(os.environ, GLOG_v="3"))


class Runner:
    """Reads a run's output in the background so the main loop can watch files at full speed."""

    def __init__(self, process):
        import threading  # pylint: disable=import-outside-toplevel
        self.process, self.lines, self.trained = process, [], threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)
            if STEP.search(line):
                self.trained.set()

    def text(self):
        self.thread.join(timeout=30)
        return "".join(self.lines)


def kill_at(runner, kind, folder, rng, lifetime):
    """SIGKILL the run at a point of `kind`; returns a description, or None when it finished first."""
    process = runner.process
    if kind == "any moment":
        deadline = time.monotonic() + rng.uniform(0.5, lifetime)
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.005)
    elif kind == "while training":
        while not runner.trained.is_set() and process.poll() is None:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 1.5))
    else:  # inside a save: while MindSpore writes the data (its .tmp), or once it is written (our .ckpt temp
        # name) while it is hashed and its manifest written, before the rename that makes it visible
        stage = (".tmp",) if kind == "inside a save (writing)" else (".ckpt", ".sha256")
        own = f".tmp-{process.pid}-k_rank_0-"  # not what an earlier killed run left
        while process.poll() is None and not any(name.startswith(own) and name.endswith(stage)
                                                 for name in temporaries(folder)):
            time.sleep(0.0002)
    if process.poll() is not None:
        return None
    seen = [name for name in temporaries(folder) if name.startswith(f".tmp-{process.pid}-")]
    process.send_signal(signal.SIGKILL)
    process.wait()
    return f"{kind}{' (temporary files: ' + ', '.join(seen) + ')' if seen else ''}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel
    with tempfile.TemporaryDirectory(prefix="kill-resume-") as work:
        config = prepare(work)
        began = time.monotonic()
        reference = start(config, os.path.join(work, "reference"), resume=False)
        output = reference.communicate()[0]
        lifetime = time.monotonic() - began
        assert reference.returncode == 0, output[-3000:]
        final = max(saves(os.path.join(work, "reference", "checkpoint", "rank_0")).items())[1]
        reference_weights = {name: value.asnumpy() for name, value in ms.load_checkpoint(final).items()}
        print(f"uninterrupted run: {lifetime:.1f} s, final checkpoint {os.path.basename(final)}")
        kinds = ["any moment", "while training", "inside a save (writing)", "inside a save (committing)"]
        kills, failures, chains, inside = 0, [], 0, 0
        while kills < args.kills:
            chains += 1
            output_dir = os.path.join(work, f"chain{chains}")
            folder = os.path.join(output_dir, "checkpoint", "rank_0")
            expected = None  # (kill number, the step the next resume must start from, leftovers it must remove)
            while True:
                runner = Runner(start(config, output_dir, resume=bool(saves(folder))))
                kind = kinds[kills % len(kinds)] if kills < args.kills else None
                what = kill_at(runner, kind, folder, rng, lifetime) if kind else None
                if what is None:
                    runner.process.wait()
                text = runner.text()
                if expected is not None and TRAINING.search(text):  # this run got as far as training
                    kill, step, stale = expected
                    if step is not None and f"resuming at global step {step}" not in text:
                        failures.append(f"kill {kill}: the next run that resumed did not resume from step {step}")
                    if any(os.path.exists(os.path.join(folder, name)) for name in stale):
                        failures.append(f"kill {kill}: {stale} survived the next start")
                    expected = None
                if what is None:
                    if runner.process.returncode != 0 or not saves(folder):
                        failures.append(f"chain {chains}: the last run failed: {text[-1500:]}")
                    break
                kills += 1
                inside += "temporary files" in what
                complete = saves(folder)
                newest = global_step(max(complete.items())[1]) if complete else None
                left = temporaries(folder)
                # what the next run that gets to training must have done (a run killed before that checks nothing)
                expected = (kills, newest, sorted(set(left) | set(expected[2] if expected else ())))
                steps = [int(m.group(1)) for m in STEP.finditer(text)]
                print(f"kill {kills:2d}: {what}; last step logged {steps[-1] if steps else '-'}; newest complete "
                      f"save at step {newest if newest is not None else '-'}; left behind: {left or 'nothing'}")
            if not saves(folder):
                break
            got = {name: value.asnumpy() for name, value in
                   ms.load_checkpoint(max(saves(folder).items())[1]).items()}
            equal = sorted(got) == sorted(reference_weights) and all(np.array_equal(got[k], value)
                                                                     for k, value in reference_weights.items())
            print(f"chain {chains}: final weights {'equal' if equal else 'DIFFER from'} the uninterrupted run's")
            if not equal:
                failures.append(f"chain {chains}: final weights differ")
        print(f"{kills} kills ({inside} inside a save) over {chains} chain(s): "
              f"{'all checks passed' if not failures else str(len(failures)) + ' failed'}")
        for failure in failures:
            print("FAILED:", failure)
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
