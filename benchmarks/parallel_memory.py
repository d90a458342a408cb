"""The dry run's per-device memory against what each CPU rank measures, for one dp x mp x pp config with sequence
parallelism and the parallel optimizer, and the ranks' loss against one process training on the same rows.

The parent writes the config (the tiny Llama YAML at the sizes given), prints the dry run's per-device estimate
(params, grads, optimizer, activations) and launches dp x mp x pp workers through scripts/msrun_launcher.sh. Each
worker builds the same network and train step as run_mindformer.py (its stage of the model, its model-parallel
shards, sequence parallelism, the parallel optimizer), trains --steps steps on its data-parallel share of fixed
random rows, and reports its RSS before the network was built, its peak RSS and the losses it logged. Then one
process (no parallelism) trains on the same rows. Printed: per rank, peak - before (what the model, its training
state and the framework's working memory for it cost) and its ratio to the dry run's total (the dry run of that
rank's stage); the largest relative difference of the logged losses from the single process'.

    python benchmarks/parallel_memory.py                  # dp 2 x mp 2, hidden 512, 4 layers, vocab 8192, seq 512
    python benchmarks/parallel_memory.py --pp 2 --hidden 256 --ffn 704 --vocab 4096 --seq 256 --batch 1  # 8 ranks
"""
import argparse
import glob
import json
import os
import resource
import socket
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
    parser.add_argument("--pp", type=int, default=1, help="pipeline stages")
    parser.add_argument("--micro", type=int, default=2, help="micro_batch_num (with --pp > 1)")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--ffn", type=int, default=1408)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2,
                        help="rows per data-parallel rank (with --pp > 1: per micro-batch, as MindFormers)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--no_seq_parallel", action="store_true")
    parser.add_argument("--no_parallel_optimizer", action="store_true")
    parser.add_argument("--run_config", help=argparse.SUPPRESS)  # internal: the config a worker runs
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)  # internal: the reference run
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
    config.parallel_config = {"data_parallel": args.dp, "model_parallel": args.mp, "pipeline_stage": args.pp,
                              "micro_batch_num": args.micro if args.pp > 1 else 1, "vocab_emb_dp": False,
                              "use_seq_parallel": not args.no_seq_parallel}
    config.parallel.enable_parallel_optimizer = not args.no_parallel_optimizer
    config.recompute_config = {"recompute": False}
    import yaml  # pylint: disable=import-outside-toplevel
    path = os.path.join(folder, "memory.yaml")
    with open(path, "w", encoding="utf-8") as stream:
        yaml.safe_dump(json.loads(json.dumps(config)), stream)
    return MindFormerConfig(path), path


def dry_run_rows(config):
    """The dry run's per-device rows, one per pipeline stage."""
    # pylint: disable=import-outside-toplevel
    from mindformers.parallel.dry_run import build_structure, estimate
    from mindformers.parallel.parallel_check import parallel_settings, rank_batch_size
    settings = parallel_settings(config)
    mc, network = build_structure(config)
    rows, _ = estimate(config, mc, network, settings, rank_batch_size(config, settings))
    return rows


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def current_rss():
    with open("/proc/self/statm", encoding="ascii") as stream:
        return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def step_rows(args, step):
    """The rows of one optimizer step over the whole mesh (dp x batch [x micro] rows), the same in every process."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    rows = args.dp * args.batch * (args.micro if args.pp > 1 else 1)
    return np.random.default_rng(step).integers(3, args.vocab, (rows, args.seq + 1)).astype(np.int32)


def worker(args):
    """One msrun worker (or, with --single, the one-process reference): the run's network and train step, a few
    steps, its RSS and losses as JSON in --out."""
    # pylint: disable=import-outside-toplevel
    import mindspore as ms
    from mindformers.core.context import set_seed
    from mindformers.parallel import check_parallel_config
    from mindformers.parallel.mesh import rank_coordinates
    from mindformers.parallel.pipeline_stage import cut_to_stage
    from mindformers.parallel.world import rank_and_size
    from mindformers.tools.register import MindFormerConfig
    from mindformers.trainer.causal_language_modeling import (CausalLanguageModelingTrainer, build_model_config,
                                                              build_network)
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU", jit_config={"jit_level": "O0"})
    config = MindFormerConfig(args.run_config)
    if args.single:
        config.parallel_config = {"data_parallel": 1, "model_parallel": 1, "vocab_emb_dp": False}
        config.parallel.enable_parallel_optimizer = False
        dp, micro = 1, 1
    else:
        from mindspore.communication import init
        os.environ.setdefault("MS_CPU_COMM_OP_TIMEOUT", "1800")  # stages wait for each other's compiles
        init()
        dp, micro = args.dp, args.micro if args.pp > 1 else 1
    set_seed(int(config.get("seed") or 0))  # every rank draws the single process' weights
    rank, world = rank_and_size()
    check_parallel_config(config, build_model_config(config), world, "CPU")
    trainer = CausalLanguageModelingTrainer(config)
    trainer.setup_parallel()
    before = current_rss()
    _, network = build_network(config, trainer.groups)
    if trainer.runs_pipeline():
        network = cut_to_stage(network, trainer.parallel, rank_coordinates(rank, trainer.parallel.mesh())[0])
    optimizer = trainer.build_optimizer(network, None)
    cell = trainer.build_wrapper(network, optimizer, micro)
    cell.set_train(True)
    share = args.batch * micro  # this data-parallel rank's rows of a step
    data_rank = trainer.data_rank if dp > 1 else 0
    losses = []
    for step in range(args.steps):
        rows = step_rows(args, step)[data_rank * share:(data_rank + 1) * share] if dp > 1 else step_rows(args, step)
        losses.append(float(cell(ms.Tensor(rows))[0].asnumpy()))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    stage = rank_coordinates(rank, trainer.parallel.mesh())[0]
    with open(os.path.join(args.out, "single.json" if args.single else f"rank_{rank}.json"), "w",
              encoding="utf-8") as stream:
        json.dump({"rank": rank, "stage": stage, "before": before, "peak": peak, "losses": losses}, stream)


def main(argv=None):
    args = parse_args(argv)
    if args.run_config:
        return worker(args)
    import mindformers  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import  (registers classes)
    folder = tempfile.mkdtemp(prefix="parallel_memory_")
    config, path = write_config(args, folder)
    rows = dry_run_rows(config)
    workers = args.dp * args.mp * args.pp
    print(f"dp {args.dp} x mp {args.mp} x pp {args.pp}" + (f" ({args.micro} micro-batches)" if args.pp > 1 else "") +
          f", seq parallel {not args.no_seq_parallel}, parallel optimizer {not args.no_parallel_optimizer}; hidden "
          f"{args.hidden}, {args.layers} layers, ffn {args.ffn}, vocab {args.vocab}, seq {args.seq}, batch "
          f"{args.batch} per data-parallel rank{' and micro-batch' if args.pp > 1 else ''}, fp32")
    for stage, row in enumerate(rows):
        print(f"dry run per device, stage {stage} (MiB): " + ", ".join(
            f"{key} {row[key] / MIB:.1f}" for key in ("params", "grads", "optimizer", "activations", "total")))
    common = (f"--run_config {path} --out {folder} --dp {args.dp} --pp {args.pp} --micro {args.micro} "
              f"--vocab {args.vocab} --seq {args.seq} --batch {args.batch} --steps {args.steps}")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    launched = subprocess.run(["bash", os.path.join(REPO, "scripts", "msrun_launcher.sh"),
                               f"benchmarks/parallel_memory.py {common}", str(workers), str(workers), "127.0.0.1",
                               str(free_port()), "0", os.path.join(folder, "log"), "True", "600"], cwd=REPO, env=env,
                              check=False, capture_output=True, text=True)
    if launched.returncode:
        print(launched.stdout[-2000:], launched.stderr[-2000:])
        return launched.returncode
    single = subprocess.run([sys.executable, os.path.abspath(__file__), *common.split(), "--single"], cwd=REPO,
                            env=env, check=False, capture_output=True, text=True)
    if single.returncode:
        print(single.stdout[-2000:], single.stderr[-2000:])
        return single.returncode
    with open(os.path.join(folder, "single.json"), encoding="utf-8") as stream:
        reference = json.load(stream)["losses"]
    for name in sorted(glob.glob(os.path.join(folder, "rank_*.json")), key=lambda n: int(n.split("_")[-1][:-5])):
        with open(name, encoding="utf-8") as stream:
            rank = json.load(stream)
        used, row = rank["peak"] - rank["before"], rows[rank["stage"]]
        worst = max(abs(got - ref) / abs(ref) for got, ref in zip(rank["losses"], reference))
        print(f"rank {rank['rank']} (stage {rank['stage']}): RSS before the network {rank['before'] / MIB:.0f} MiB, "
              f"peak {rank['peak'] / MIB:.0f} MiB, peak - before {used / MIB:.1f} MiB = {used / row['total']:.2f} x "
              f"the dry run's total; loss vs one process: max relative difference {worst:.1e}")
    print("one process: losses " + ", ".join(f"{loss:.6f}" for loss in reference))
    return 0


if __name__ == "__main__":
    sys.exit(main())
