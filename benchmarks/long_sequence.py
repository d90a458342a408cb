"""Training at long sequences: tokens/s and peak RSS of ours against HF transformers + PyTorch (SDPA attention).

One training step = forward + backward + AdamW update with global-norm clipping (train_throughput.py's step on both
sides), batch 1, over sequence lengths 256 .. 8192. Every (side, sequence length) runs in a fresh subprocess so that
its peak RSS is its own; the subprocesses run one at a time (ours, then theirs, per length), each with the same
thread count. Ours runs with the attention the model config picks by default (blockwise from
choices.FUSED_CPU_MIN_SEQ on with the fused CPU kernel, else from choices.BLOCKWISE_MIN_SEQ), or the one forced by
--attention.

    python benchmarks/long_sequence.py                            # 8 layers, hidden 512, seq 256 .. 8192
    python benchmarks/long_sequence.py --rss-limit-gib 12         # a side passing 12 GiB is stopped, shown failed
    python benchmarks/long_sequence.py --seqs 8192 --sides ours   # one side only (no ratios)
    python benchmarks/long_sequence.py --seqs 8192 --layerwise    # ours with context.layerwise_compile
    python benchmarks/long_sequence.py --seqs 64 128 --layers 1 --hidden 64 --heads 4 --vocab 512 --steps 1

Prints one line per side and length (ms/step and the process' CPU seconds per step, tokens/s, first step incl.
compile, peak RSS), then a table of ratios (tokens/s ours/theirs, peak RSS ours/theirs, CPU seconds per step
theirs/ours: the work each step costs, which other load on a shared machine stretches less than wall time; with
both cores busy it is about twice the wall time) per length.
"""
import argparse
import json
import os
import resource
import sys
import time

os.environ.setdefault("GLOG_v", "3")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import train_throughput  # noqa: E402  pylint: disable=wrong-import-position,import-error  (this script's folder)
from child_process import run_child  # noqa: E402  pylint: disable=wrong-import-position,import-error

DEFAULT_SEQS = [256, 512, 1024, 2048, 4096, 8192]
RESULT_PREFIX = "RESULT "


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seqs", type=int, nargs="+", default=DEFAULT_SEQS)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=None)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side and length")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps after the first (compiling) one")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--attention", choices=["auto", "blockwise", "composed", "exact"], default="auto",
                        help="ours: the config's default (auto), or force one path: blockwise (the fused C++ kernel "
                             "where it builds), composed (blockwise from MindSpore primitives), exact")
    parser.add_argument("--recompute", action="store_true",
                        help="ours: recompute every decoder layer in the backward (recompute_config recompute: True)")
    parser.add_argument("--layerwise", action="store_true",
                        help="ours: context.layerwise_compile (PyNative, one compiled graph per distinct layer)")
    parser.add_argument("--rss-limit-gib", type=float, default=None,
                        help="stop a side whose RSS passes this (reported as failed); protects a shared machine")
    parser.add_argument("--sides", choices=["ours", "theirs"], nargs="+", default=["ours", "theirs"],
                        help="run only these sides (one side alone prints no ratios)")
    parser.add_argument("--worker", choices=["ours", "theirs"], help=argparse.SUPPRESS)
    parser.add_argument("--seq", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.threads = args.threads or train_throughput.core_count()
    return args


def throughput_args(args, seq):
    """train_throughput's arguments for one length (its model config, tokens and builders take them)."""
    return train_throughput.parse_args([
        "--layers", str(args.layers), "--hidden", str(args.hidden), "--heads", str(args.heads),
        "--vocab", str(args.vocab), "--seq", str(seq), "--batch", str(args.batch), "--steps", str(args.steps),
        "--warmup", str(args.warmup), "--threads", str(args.threads)]
        + (["--kv-heads", str(args.kv_heads)] if args.kv_heads else []))


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def pick_attention(config, choice):
    """Sets `config` (and the config switch's thresholds) to the attention `choice` (--attention) asks for; returns
    the path the model takes: "exact", "fused kernel" or "blockwise composed"."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from mindformers.kernels import cpu_attention  # pylint: disable=import-outside-toplevel
    from mindformers.models.decoder import choices  # pylint: disable=import-outside-toplevel
    if choice == "composed":
        os.environ["MINDFORMERS_CPU_KERNELS"] = "0"
    if choice != "auto":
        config.use_flash_attention = choice != "exact"
        choices.BLOCKWISE_MIN_SEQ = 0 if choice != "exact" else choices.BLOCKWISE_MIN_SEQ
    if not choices.use_blockwise_attention(config, fused=False):
        return "exact"
    return "fused kernel" if cpu_attention.available(ms.float32) else "blockwise composed"


def run_worker(args):
    """One side at one length in this process; prints a RESULT line of JSON."""
    targs = throughput_args(args, args.seq)
    tokens = train_throughput.batch_tokens(targs)
    if args.worker == "ours":
        import mindspore as ms  # pylint: disable=import-outside-toplevel
        ms.set_device("CPU")
        ms.set_context(mode=ms.GRAPH_MODE)
        ms.device_context.cpu.op_tuning.threads_num(args.threads)
        config = train_throughput.model_config(targs)
        attention = pick_attention(config, args.attention)
        start = time.perf_counter()
        recompute = {"recompute": True} if args.recompute else None
        # runs the first (compiling) step
        step = train_throughput.build_ours(targs, config, tokens, layerwise=args.layerwise,
                                           recompute_config=recompute)[0]
        first_seconds = time.perf_counter() - start
    else:
        import torch  # pylint: disable=import-outside-toplevel
        torch.set_num_threads(args.threads)
        config = train_throughput.model_config(targs)
        start = time.perf_counter()
        step, attention = train_throughput.build_theirs(targs, config, tokens, attn_implementation="sdpa")
        step()
        first_seconds = time.perf_counter() - start
    recorder = train_throughput.CpuSecondsRecorder(step)
    [(seconds, losses)] = train_throughput.timed_alternately(args.steps, args.warmup, recorder)
    print(RESULT_PREFIX + json.dumps({
        "side": args.worker, "seq": args.seq, "attention": attention, "step_seconds": seconds,
        "step_cpu_seconds": recorder.median(args.steps),
        "tokens_per_second": args.batch * args.seq / seconds, "first_step_seconds": first_seconds,
        "peak_rss_bytes": peak_rss_bytes(), "last_loss": losses[-1]}), flush=True)


def run_side(args, side, seq):
    """A worker in a fresh child process (child_process.run_child) for one side and length: its RESULT dict with
    the child's peak RSS from wait4, or a dict with "error"."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", side, "--seq", str(seq),
               "--layers", str(args.layers), "--hidden", str(args.hidden), "--heads", str(args.heads),
               "--vocab", str(args.vocab), "--batch", str(args.batch), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--threads", str(args.threads), "--attention", args.attention]
    if args.recompute:
        command.append("--recompute")
    if args.layerwise:
        command.append("--layerwise")
    if args.kv_heads:
        command += ["--kv-heads", str(args.kv_heads)]
    try:
        limit = args.rss_limit_gib * 2 ** 30 if args.rss_limit_gib else None
        _, peak_rss, stdout, _ = run_child(command, rss_limit_bytes=limit)
    except SystemExit as failure:  # run_child exits with the child's output when it fails (e.g. out of memory)
        tail = (str(failure).strip().splitlines() or ["no output"])[-1]
        return {"side": side, "seq": seq, "error": tail[:300]}
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return dict(json.loads(line[len(RESULT_PREFIX):]), peak_rss_bytes=peak_rss)
    return {"side": side, "seq": seq, "error": "no result line"}


def describe(result):
    if "error" in result:
        return f"{result['side']:6s} seq {result['seq']:5d}: FAILED ({result['error']})"
    return (f"{result['side']:6s} seq {result['seq']:5d} ({result['attention']}): "
            f"{result['step_seconds'] * 1e3:.0f} ms/step ({result['step_cpu_seconds']:.2f} CPU-s), "
            f"{result['tokens_per_second']:.1f} tokens/s, first step "
            f"{result['first_step_seconds']:.1f} s (build+compile+run), peak RSS "
            f"{result['peak_rss_bytes'] / 2 ** 30:.2f} GiB, loss {result['last_loss']:.3f}")


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return None
    print(f"threads: {args.threads}; layers={args.layers} hidden={args.hidden} heads={args.heads} "
          f"vocab={args.vocab} batch={args.batch} fp32; {args.steps} timed steps after {args.warmup} warmup, medians; "
          f"ours attention: {args.attention}; theirs: transformers SDPA", flush=True)
    rows = []
    for seq in args.seqs:
        results = {}
        for side in args.sides:
            results[side] = run_side(args, side, seq)
            print(describe(results[side]), flush=True)
        if len(results) == 2:
            rows.append((seq, results["ours"], results["theirs"]))
    ratios = {}
    if rows:
        print("seq    tokens/s ours/theirs   peak RSS ours/theirs (GiB)   CPU-s/step theirs/ours")
    for seq, ours, theirs in rows:
        if "error" in ours or "error" in theirs:
            print(f"{seq:<6d} n/a ({'ours' if 'error' in ours else 'theirs'} failed)")
            continue
        ratio = ours["tokens_per_second"] / theirs["tokens_per_second"]
        ratios[seq] = ratio
        cpu_ratio = theirs["step_cpu_seconds"] / ours["step_cpu_seconds"]
        print(f"{seq:<6d} {ratio:.2f}                   {ours['peak_rss_bytes'] / 2 ** 30:.2f} / "
              f"{theirs['peak_rss_bytes'] / 2 ** 30:.2f}              {cpu_ratio:.2f}")
    return ratios


if __name__ == "__main__":
    main()
