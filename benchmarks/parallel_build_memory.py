"""Peak memory of building one model-parallel rank's model: drawing every whole weight and then splitting (the
reference) against drawing only the rank's slices when parallelize splits (initial_values_deferred, what the
trainer and predict do). Each side builds in its own child process; both must hold the same weights.

    python benchmarks/parallel_build_memory.py [--hidden 1024 --layers 8 --vocab 32000 --model_parallel 2]
"""
import argparse
import contextlib
import hashlib
import json
import os
import resource
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.child_process import run_child  # noqa: E402  pylint: disable=wrong-import-position


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--model_parallel", type=int, default=2)
    parser.add_argument("--side", choices=("eager", "deferred"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def build_side(args):
    """Build rank 0's model in this process; print its weights' digest and the RSS growth of the build."""
    # pylint: disable=import-outside-toplevel
    import numpy as np
    import mindspore as ms
    from mindformers.models.llama import LlamaConfig, LlamaForCausalLM
    from mindformers.models.modules.shape_only import initial_values_deferred
    from mindformers.parallel.groups import ParallelGroups
    from mindformers.parallel.parallelize import parallelize
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    config = LlamaConfig(vocab_size=args.vocab, seq_length=64, hidden_size=args.hidden, num_layers=args.layers,
                         num_heads=8, intermediate_size=4 * args.hidden, compute_dtype="float32",
                         param_init_type="float32", parallel_config={"vocab_emb_dp": False})
    np.random.seed(0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with initial_values_deferred() if args.side == "deferred" else contextlib.nullcontext():
        model = LlamaForCausalLM(config)
    parallelize(model, ParallelGroups(model_parallel=args.model_parallel, model_rank=0))
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    digest = hashlib.sha256()
    for param in model.get_parameters():
        digest.update(param.asnumpy().tobytes())
    local = sum(param.size for param in model.get_parameters()) * 4
    print(json.dumps({"growth": growth, "digest": digest.hexdigest(), "local_bytes": local}))


def measure(args, side):
    argv = [sys.executable, os.path.abspath(__file__), "--side", side, "--hidden", str(args.hidden),
            "--layers", str(args.layers), "--vocab", str(args.vocab), "--model_parallel", str(args.model_parallel)]
    _, _, stdout, _ = run_child(argv)
    return json.loads(stdout.strip().splitlines()[-1])


def main(argv=None):
    args = parse_args(argv)
    if args.side:
        build_side(args)
        return
    eager, deferred = measure(args, "eager"), measure(args, "deferred")
    if eager["digest"] != deferred["digest"]:
        raise SystemExit("the deferred build holds other weights than the eager build")
    mb = 1024 * 1024
    print(f"rank 0 of model_parallel {args.model_parallel}: local weights {eager['local_bytes'] / mb:.0f} MB; build "
          f"peak growth: whole then split {eager['growth'] / mb:.0f} MB, slices drawn when split "
          f"{deferred['growth'] / mb:.0f} MB; ratio {deferred['growth'] / eager['growth']:.2f} (same weights)")


if __name__ == "__main__":
    main()
