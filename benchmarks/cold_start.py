"""Cold start: seconds to the first training step, ours (graph mode, and with --modes layerwise PyNative with
context.layerwise_compile) against HF transformers + PyTorch (eager), for several layer counts, and ours again on a
second run of the same config with MindSpore's compile cache.

Every measurement is a fresh child process (a cold start is a new process), run one after another in this script:
ours without the cache, ours with an empty cache folder (the first run, which fills it), ours again with that
folder (the second run), and theirs. The model is train_throughput.py's (hidden 512, vocab 32000, fp32, AdamW with
clipping); one step is forward + backward + update.

    python benchmarks/cold_start.py                               # 8 and 32 layers, seq 256, batch 2
    python benchmarks/cold_start.py --layers 1 2 --hidden 64 --heads 4 --vocab 512 --seq 32
    python benchmarks/cold_start.py --modes graph layerwise    # both of ours, side by side

Prints per run: import, build, compile and first-step seconds and their total (build + compile + first step, the
wait before training starts; imports listed apart) with the CPU seconds of that total (less sensitive to other
load on a shared machine than wall time), then the lines
`ratio ours/theirs to first step, N layers: X.XX`, `ratio ours 32/8 layers: compile X.XX, to first step Y.YY (CPU Z.ZZ)`
(layerwise: `..., beyond one steady step W.WW`, the ratio of the waits less one steady step each)
and `ratio second/first run with compile cache, N layers: X.XX` (< 1: the cache saves that share), with a `layerwise`
after `ours` for that mode. Layerwise compiles while its first step runs (its compile column is 0; the traced layer
graphs' seconds, trace + compile + first run, are printed beside it), its run also times a second step (steady
state), and it has no cached runs: the trainer turns the compile cache off with layerwise_compile (README).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

START = time.perf_counter()
os.environ.setdefault("GLOG_v", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
for path in (REPO, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for both sides; default: core count")
    parser.add_argument("--modes", nargs="+", choices=["graph", "layerwise"], default=["graph"],
                        help="how ours runs: graph mode, or PyNative with context.layerwise_compile")
    parser.add_argument("--mode", choices=["graph", "layerwise"], help=argparse.SUPPRESS)  # internal: one child
    parser.add_argument("--side", choices=["ours", "theirs"], help=argparse.SUPPRESS)  # internal: one child
    parser.add_argument("--num-layers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def throughput_args(args, layers):
    """train_throughput.py's arguments for the same model, so both benchmarks build one thing one way."""
    from train_throughput import parse_args as throughput_parse  # pylint: disable=import-outside-toplevel
    argv = ["--layers", str(layers), "--hidden", str(args.hidden), "--heads", str(args.heads), "--vocab",
            str(args.vocab), "--seq", str(args.seq), "--batch", str(args.batch)]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    return throughput_parse(argv)


def set_context(layerwise, threads, cache=None):
    """MindSpore's context for ours on CPU: graph mode, or PyNative for layerwise compilation; `cache` turns the
    compile cache on into that folder."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    ms.set_device("CPU")
    if layerwise:  # PyNative on CPU runs ops synchronously, as build_context sets it for training runs
        ms.set_context(mode=ms.PYNATIVE_MODE, pynative_synchronize=True)
    else:
        ms.set_context(mode=ms.GRAPH_MODE)
    if cache:
        ms.set_context(enable_compile_cache=True, compile_cache_path=cache)
    ms.device_context.cpu.op_tuning.threads_num(threads)


def run_ours(args):
    imported = time.perf_counter()
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    import train_throughput as bench  # pylint: disable=import-outside-toplevel
    layerwise = args.mode == "layerwise"
    options = throughput_args(args, args.num_layers)
    set_context(layerwise, options.threads, args.cache)
    config = bench.model_config(options)
    tokens = ms.Tensor(bench.batch_tokens(options))
    start, cpu = time.perf_counter(), time.process_time()
    cell, model = bench.build_train_cell(options, config)
    graphs = bench.use_layerwise(cell, model) if layerwise else None
    built, built_cpu = time.perf_counter(), time.process_time()
    if not layerwise:
        cell.compile(tokens)
    compiled, compiled_cpu = time.perf_counter(), time.process_time()
    loss = float(cell(tokens)[0].asnumpy())
    done, done_cpu = time.perf_counter(), time.process_time()
    record = {"import": start - imported, "build": built - start, "compile": compiled - built,
              "step": done - compiled, "cpu": done_cpu - cpu, "compile_cpu": compiled_cpu - built_cpu,
              "step_cpu": done_cpu - compiled_cpu, "loss": loss}
    if layerwise:
        float(cell(tokens)[0].asnumpy())
        record.update(traces=graphs.traces, traced=graphs.trace_seconds, second_step=time.perf_counter() - done)
    return record


def run_theirs(args):
    imported = time.perf_counter()
    import torch  # pylint: disable=import-outside-toplevel
    import transformers.models.llama.modeling_llama  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    import train_throughput as bench  # pylint: disable=import-outside-toplevel
    options = throughput_args(args, args.num_layers)
    torch.set_num_threads(options.threads)
    config = bench.model_config(options)
    tokens = bench.batch_tokens(options)
    start, cpu = time.perf_counter(), time.process_time()
    step, _ = bench.build_theirs(options, config, tokens)
    built, built_cpu = time.perf_counter(), time.process_time()
    loss = step()
    done = time.perf_counter()
    return {"import": start - imported, "build": built - start, "compile": 0.0, "step": done - built,
            "cpu": time.process_time() - cpu, "compile_cpu": 0.0, "step_cpu": time.process_time() - built_cpu,
            "loss": loss}


def child(args, side, layers, cache=None, mode=None):
    argv = (sys.argv[1:] + ["--side", side, "--num-layers", str(layers)] + (["--cache", cache] if cache else [])
            + (["--mode", mode] if mode else []))
    result = subprocess.run([sys.executable, os.path.abspath(__file__)] + argv, capture_output=True, text=True,
                            env=dict(os.environ, GLOG_v="3", PYTHONWARNINGS="ignore"), check=False)
    if result.returncode != 0:
        sys.exit(f"{side} ({layers} layers) failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    record = json.loads(result.stdout.strip().splitlines()[-1])
    record["total"] = record["build"] + record["compile"] + record["step"]
    return record


def show(name, record):
    print(f"{name:<34} import {record['import']:5.1f} s | build {record['build']:5.1f} s | compile "
          f"{record['compile']:5.1f} s (CPU {record['compile_cpu']:5.1f} s) | first step {record['step']:5.1f} s (CPU "
          f"{record['step_cpu']:5.1f} s) | to first step {record['total']:6.1f} s (CPU {record['cpu']:6.1f} s) | loss "
          f"{record['loss']:.4f}" + (f" | {record['traces']} layer graphs traced in {record['traced']:.1f} s | second "
                                   f"step {record['second_step']:.2f} s" if "traces" in record else ""), flush=True)


def main(argv=None):
    args = parse_args(argv)
    if args.side:
        print(json.dumps((run_ours if args.side == "ours" else run_theirs)(args)))
        return None
    print(f"model: hidden={args.hidden} heads={args.heads} vocab={args.vocab} seq={args.seq} batch={args.batch} "
          f"fp32; layers {args.layers}; each run a fresh process, one after another", flush=True)
    results = {mode: {} for mode in args.modes}
    with tempfile.TemporaryDirectory(prefix="cold_start_cache_") as cache_root:
        for layers in args.layers:
            for mode in args.modes:
                cache = os.path.join(cache_root, f"{mode}_layers_{layers}")
                ours = "ours" if mode == "graph" else f"ours {mode}"
                runs = {"ours": child(args, "ours", layers, mode=mode)}
                show(f"{ours}, {layers} layers", runs["ours"])
                results[mode][layers] = runs
                if mode == "layerwise":
                    continue  # the trainer does not use the compile cache with layerwise_compile (README)
                runs["first"] = child(args, "ours", layers, cache, mode=mode)
                show(f"{ours}, {layers} layers, cache: first", runs["first"])
                runs["second"] = child(args, "ours", layers, cache, mode=mode)
                show(f"{ours}, {layers} layers, cache: second", runs["second"])
            theirs = child(args, "theirs", layers)
            show(f"theirs, {layers} layers", theirs)
            for mode in args.modes:
                results[mode][layers]["theirs"] = theirs
    for mode, by_layers in results.items():
        ours = "ours" if mode == "graph" else f"ours {mode}"
        for layers, runs in by_layers.items():
            print(f"ratio {ours}/theirs to first step, {layers} layers: "
                  f"{runs['ours']['total'] / runs['theirs']['total']:.2f}")
        if len(args.layers) > 1:
            low, high = min(args.layers), max(args.layers)
            compile_ratio = (f"compile {by_layers[high]['ours']['compile'] / by_layers[low]['ours']['compile']:.2f}, "
                             if mode == "graph" else "")
            high_run, low_run = by_layers[high]["ours"], by_layers[low]["ours"]
            # Layerwise: the wait beyond one steady step, i.e. what tracing and first touches add, apart from the
            # step's own compute (which grows with the layer count however little is compiled)
            overhead = ""
            if "second_step" in low_run:
                beyond = [run["total"] - run["second_step"] for run in (high_run, low_run)]
                overhead = f", beyond one steady step {beyond[0] / beyond[1]:.2f}"
            print(f"ratio {ours} {high}/{low} layers: {compile_ratio}to first step "
                  f"{high_run['total'] / low_run['total']:.2f} (CPU {high_run['cpu'] / low_run['cpu']:.2f}){overhead}")
        for layers, runs in by_layers.items():
            if "second" not in runs:
                continue
            print(f"ratio second/first run with compile cache, {layers} layers: "
                  f"{runs['second']['total'] / runs['first']['total']:.2f} (compile "
                  f"{runs['second']['compile']:.1f} s vs {runs['first']['compile']:.1f} s)")
    return results


if __name__ == "__main__":
    main()
