"""Step time and peak memory of LoRA vs full fine-tuning of the same Llama, measured in the same run.

Each side runs in its own child process (so each peak resident memory is its own): the model, AdamW over the
trainable parameters and MFTrainOneStepCell, on random labelled rows (half prompt, half learned reply).
Full fine-tuning trains every weight; LoRA (rank --rank on --targets) trains only the adapters, so its optimizer
holds two moments for a small fraction of the parameters and the weight gradients of frozen layers are skipped.

    python benchmarks/lora_vs_full.py                            # 8 layers, hidden 512, vocab 32000, seq 256, batch 2
    python benchmarks/lora_vs_full.py --layers 1 --hidden 64 --heads 4 --vocab 512 --seq 32 --steps 1 --warmup 1

Prints one line per side (`full ...` / `lora ...`: trainable parameters, ms/step, peak MiB) and
`ratio lora/full: step time X.XX, peak memory Y.YY` (< 1 means LoRA is cheaper).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("GLOG_v", "3")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--targets", default=".*wq|.*wk|.*wv|.*wo")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per side")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per side (after compilation)")
    parser.add_argument("--mode", choices=["graph", "pynative"], default="graph")
    parser.add_argument("--side", choices=["full", "lora"], help=argparse.SUPPRESS)  # internal: one child's side
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    return args


def run_side(args):
    """In the child: build, train, report JSON on stdout."""
    import numpy as np
    import mindspore as ms
    from mindformers.core.optim import AdamW
    from mindformers.models.llama import LlamaConfig, LlamaForCausalLM
    from mindformers.pet import apply_pet
    from mindformers.wrapper import MFTrainOneStepCell

    from mindformers.core.context.build_context import cpu_run_settings  # pylint: disable=import-outside-toplevel
    ms.set_context(device_target="CPU", **cpu_run_settings(ms.GRAPH_MODE if args.mode == "graph" else ms.PYNATIVE_MODE))
    if args.mode == "graph":
        ms.set_context(jit_config={"jit_level": "O0"})
    np.random.seed(0)
    model = LlamaForCausalLM(LlamaConfig(seq_length=args.seq, hidden_size=args.hidden, num_layers=args.layers,
                                         num_heads=args.heads, vocab_size=args.vocab, compute_dtype="float32",
                                         softmax_compute_type="float32", rotary_dtype="float32"))
    if args.side == "lora":
        apply_pet(model, {"pet_type": "lora", "lora_rank": args.rank, "lora_alpha": 2 * args.rank,
                          "target_modules": args.targets})
    cell = MFTrainOneStepCell(model, AdamW(model.trainable_params(), learning_rate=1e-4, weight_decay=0.1))
    cell.set_train(True)
    rng = np.random.default_rng(0)
    ids = rng.integers(3, args.vocab, (args.batch, args.seq + 1)).astype(np.int32)
    labels = ids.copy()
    labels[:, :args.seq // 2] = -100
    ids, labels = ms.Tensor(ids), ms.Tensor(labels)
    for _ in range(args.warmup + 1):  # the first call compiles
        cell(ids, labels)[0].asnumpy()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        cell(ids, labels)[0].asnumpy()
        times.append(time.perf_counter() - start)
    times.sort()
    print(json.dumps({"trainable": int(sum(p.size for p in model.trainable_params())),
                      "total": int(sum(p.size for p in model.get_parameters())),
                      "step_ms": 1000 * times[len(times) // 2],
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main(argv=None):
    args = parse_args(argv)
    if args.side:
        return run_side(args)
    argv = list(sys.argv[1:] if argv is None else argv)
    results = {}
    for side in ("full", "lora"):
        child = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--side", side],
                               capture_output=True, text=True)
        if child.returncode != 0:
            sys.exit(f"error: the {side} side failed:\n{child.stderr[-3000:]}")
        results[side] = json.loads(child.stdout.strip().splitlines()[-1])
        r = results[side]
        print(f"{side} trainable {r['trainable']:,} of {r['total']:,} parameters: {r['step_ms']:.1f} ms/step, "
              f"peak {r['peak_mib']:.0f} MiB")
    full, lora = results["full"], results["lora"]
    print(f"ratio lora/full: step time {lora['step_ms'] / full['step_ms']:.2f}, "
          f"peak memory {lora['peak_mib'] / full['peak_mib']:.2f}")
    return results


if __name__ == "__main__":
    main()
