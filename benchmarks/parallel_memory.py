"""The dry run's per-device memory against what each CPU rank measures, for one dp x mp config with sequence
parallelism and the parallel optimizer.

The parent writes the config (the tiny Llama YAML at the sizes given), prints the dry run's per-device estimate
(params, grads, optimizer, activations) and launches dp x mp workers through scripts/msrun_launcher.sh. Each worker
builds the same network and train step as run_mindformer.py (its model-parallel shards, sequence parallelism, the
parallel optimizer), trains --steps steps on random rows, and reports its RSS before the network was built and its
peak RSS. Printed: per rank, peak - before (what the model, its training state and the framework's working memory
for it cost) and its ratio to the dry run's total.

    python benchmarks/parallel_memory.py                  # dp 2 x mp 2, hidden 512, 4 layers, vocab 8192, seq 512
"""
import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile

os.environ.setdefault("GLOG_v", "3")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
MIB = 1024 ** 2


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dp", type=int, default=2)
    parser.add_argument("--mp", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--ffn", type=int, default=1408)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2, help="rows per data-parallel rank")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--no_seq_parallel", action="store_true")
    parser.add_argument("--no_parallel_optimizer", action="store_true")
    parser.add_argument("--run_config", help=argparse.SUPPRESS)  # internal: the config a worker runs
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def write_config(args, folder):
    from mindformers.tools.register import MindFormerConfig  # pylint: disable=import-outside-toplevel
    config = MindFormerConfig(os.path.join(REPO, "configs", "llama2", "pretrain_llama2_tiny.yaml"))
    sizes = {"hidden_size": args.hidden, "num_layers": args.layers, "num_heads": args.heads,
             "n_kv_heads": args.heads, "intermediate_size": args.ffn, "vocab_size": args.vocab,
             "seq_length": args.seq}
    for key, value in sizes.items():  # one key at a time: a nested dict would replace the whole section
        config.model.model_config[key] = value
    config.runner_config.batch_size = args.batch
    config.parallel_config = {"data_parallel": args.dp, "model_parallel": args.mp, "vocab_emb_dp": False,
                              "use_seq_parallel": not args.no_seq_parallel}
    config.parallel.enable_parallel_optimizer = not args.no_parallel_optimizer
    config.recompute_config = {"recompute": False}
    import yaml  # pylint: disable=import-outside-toplevel
    path = os.path.join(folder, "memory.yaml")
    with open(path, "w", encoding="utf-8") as stream:
        yaml.safe_dump(json.loads(json.dumps(config)), stream)
    return MindFormerConfig(path), path


def dry_run_rows(config):
    # pylint: disable=import-outside-toplevel
    from mindformers.parallel.dry_run import build_structure, estimate
    from mindformers.parallel.parallel_check import parallel_settings, rank_batch_size
    settings = parallel_settings(config)
    mc, network = build_structure(config)
    rows, _ = estimate(config, mc, network, settings, rank_batch_size(config, settings))
    return rows[0]


def current_rss():
    with open("/proc/self/statm", encoding="ascii") as stream:
        return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(args):
    """One msrun worker: the run's network and train step, a few steps, its RSS as JSON in --out."""
    # pylint: disable=import-outside-toplevel
    import numpy as np
    import mindspore as ms
    from mindspore.communication import init
    from mindformers.parallel import check_parallel_config
    from mindformers.parallel.world import rank_and_size
    from mindformers.tools.register import MindFormerConfig
    from mindformers.trainer.causal_language_modeling import CausalLanguageModelingTrainer, build_model_config
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU", jit_config={"jit_level": "O0"})
    init()
    config = MindFormerConfig(args.run_config)
    rank, world = rank_and_size()
    check_parallel_config(config, build_model_config(config), world, "CPU")
    trainer = CausalLanguageModelingTrainer(config)
    trainer.setup_parallel()
    before = current_rss()
    from mindformers.trainer.causal_language_modeling import build_network
    _, network = build_network(config, trainer.groups)
    optimizer = trainer.build_optimizer(network, None)
    cell = trainer.build_wrapper(network, optimizer, 1)
    cell.set_train(True)
    ids = np.random.default_rng(rank).integers(3, args.vocab, (args.batch, args.seq + 1)).astype(np.int32)
    for _ in range(args.steps):
        cell(ms.Tensor(ids))[0].asnumpy()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with open(os.path.join(args.out, f"rank_{rank}.json"), "w", encoding="utf-8") as stream:
        json.dump({"rank": rank, "before": before, "peak": peak}, stream)


def main(argv=None):
    args = parse_args(argv)
    if args.run_config:
        return worker(args)
    import mindformers  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import  (registers classes)
    folder = tempfile.mkdtemp(prefix="parallel_memory_")
    config, path = write_config(args, folder)
    row = dry_run_rows(config)
    print(f"dp {args.dp} x mp {args.mp}, seq parallel {not args.no_seq_parallel}, parallel optimizer "
          f"{not args.no_parallel_optimizer}; hidden {args.hidden}, {args.layers} layers, ffn {args.ffn}, vocab "
          f"{args.vocab}, seq {args.seq}, batch {args.batch} per data-parallel rank, fp32")
    print("dry run per device (MiB): " + ", ".join(f"{key} {row[key] / MIB:.1f}" for key in
                                                   ("params", "grads", "optimizer", "activations", "total")))
    command = (f"benchmarks/parallel_memory.py --run_config {path} --out {folder} --vocab {args.vocab} "
               f"--seq {args.seq} --batch {args.batch} --steps {args.steps}")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    launched = subprocess.run(["bash", os.path.join(REPO, "scripts", "msrun_launcher.sh"), command,
                               str(args.dp * args.mp), str(args.dp * args.mp), "127.0.0.1", "8213", "0",
                               os.path.join(folder, "log"), "True", "300"], cwd=REPO, env=env, check=False,
                              capture_output=True, text=True)
    if launched.returncode:
        print(launched.stdout[-2000:], launched.stderr[-2000:])
        return launched.returncode
    for name in sorted(glob.glob(os.path.join(folder, "rank_*.json"))):
        with open(name, encoding="utf-8") as stream:
            rank = json.load(stream)
        used = rank["peak"] - rank["before"]
        print(f"rank {rank['rank']}: RSS before the network {rank['before'] / MIB:.0f} MiB, peak "
              f"{rank['peak'] / MIB:.0f} MiB, peak - before {used / MIB:.1f} MiB = {used / row['total']:.2f} x the "
              f"dry run's total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
