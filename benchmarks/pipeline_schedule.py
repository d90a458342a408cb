"""The pipeline bubble on CPU: step time of pipeline_stage 2 (1F1B, msrun with 2 workers) against micro_batch_num,
beside the ideal bubble fraction (pp - 1) / (m + pp - 1) and the step time of one process on the same global batch.

One msrun launch runs every micro_batch_num in turn (each: build the tiny Llama, cut it to the worker's stage,
untimed warm-up steps that include graph compilation, then timed steps); the one-process reference (the whole model
and MFTrainOneStepCell, the same rows, the same seed) runs in this script first.

    python benchmarks/pipeline_schedule.py                      # 4 layers, hidden 256, seq 128, 16 rows per step
    python benchmarks/pipeline_schedule.py --micro 2 4 8 --rows 16 --steps 3

Per micro_batch_num it prints the pp2 step time, its ratio to the pp1 step time, the ideal bubble fraction and the
ideal ratio (m + pp - 1) / (m x pp) (two stages sharing the work perfectly apart from the bubble). A stage's
backward recomputes its forward (see mindformers/parallel/pipeline_stage.py), and both workers share the machine's
cores with each other where the one process has them all, so the measured ratio sits above the ideal one.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("GLOG_v", "3")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
STAGES = 2


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=2000)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--rows", type=int, default=16, help="rows per step (the global batch)")
    parser.add_argument("--micro", type=int, nargs="+", default=[2, 4, 8], help="micro_batch_num values")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per setting (compilation included)")
    parser.add_argument("--mode", choices=["graph", "pynative"], default="graph")
    parser.add_argument("--port", type=int, default=18467)
    parser.add_argument("--worker_output", help=argparse.SUPPRESS)  # internal: a worker's JSON file
    args = parser.parse_args(argv)
    if args.steps < 1 or any(m < STAGES or args.rows % m for m in args.micro):
        parser.error(f"--micro values must be >= {STAGES} and divide --rows; --steps >= 1")
    return args


def setup(args):
    import numpy as np
    import mindspore as ms
    from mindformers.core.context.build_context import cpu_run_settings  # pylint: disable=import-outside-toplevel
    ms.set_context(device_target="CPU", **cpu_run_settings(ms.GRAPH_MODE if args.mode == "graph" else ms.PYNATIVE_MODE))
    rows = np.random.default_rng(0).integers(0, args.vocab, (args.rows, args.seq + 1)).astype(np.int32)
    return ms.Tensor(rows)


def build_model(args):
    import numpy as np
    from mindformers.models.llama import LlamaConfig, LlamaForCausalLM
    np.random.seed(0)
    config = LlamaConfig(seq_length=args.seq, hidden_size=args.hidden, num_layers=args.layers, num_heads=args.heads,
                         n_kv_heads=args.heads, vocab_size=args.vocab, intermediate_size=2 * args.hidden,
                         compute_dtype="float32", softmax_compute_type="float32", rotary_dtype="float32",
                         param_init_type="float32")
    model = LlamaForCausalLM(config)
    model.set_train(True)
    return model


def timed_steps(cell, batch, args):
    for _ in range(args.warmup):
        cell(batch)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        cell(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def optimizer_for(network):
    from mindformers.core.optim import AdamW
    return AdamW(network.trainable_params(), learning_rate=1e-3)


def single_process(args):
    from mindformers.wrapper import MFTrainOneStepCell
    batch = setup(args)
    network = build_model(args)
    return timed_steps(MFTrainOneStepCell(network, optimizer_for(network)), batch, args)


def worker(args):
    """Under msrun: this rank's stage of pp2, every micro_batch_num in turn; rank 0 writes the times."""
    from mindspore.communication import get_rank
    from mindformers.parallel import ParallelSettings
    from mindformers.parallel.world import init_communication
    from mindformers.parallel.pipeline_stage import cut_to_stage
    from mindformers.wrapper.pipeline_train_step import build_pipeline_wrapper
    batch = setup(args)
    rank, _ = init_communication()
    times = {}
    for micro in args.micro:
        settings = ParallelSettings(pipeline_stage=STAGES, micro_batch_num=micro)
        network = cut_to_stage(build_model(args), settings, rank)
        cell = build_pipeline_wrapper({}, network, optimizer_for(network), settings, get_rank(), micro)
        times[micro] = timed_steps(cell, batch, args)
    if rank == 0:
        with open(args.worker_output, "w", encoding="utf-8") as stream:
            json.dump(times, stream)


def launch_workers(args, output):
    forwarded = [f"--{key} {value}" for key, value in (("layers", args.layers), ("hidden", args.hidden),
                                                        ("heads", args.heads), ("vocab", args.vocab),
                                                        ("seq", args.seq), ("rows", args.rows),
                                                        ("steps", args.steps), ("warmup", args.warmup),
                                                        ("mode", args.mode))]
    command = " ".join(["benchmarks/pipeline_schedule.py", *forwarded, "--micro",
                        *map(str, args.micro), "--worker_output", output])
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    log_dir = os.path.join(os.path.dirname(output), "msrun_log")
    result = subprocess.run(["bash", os.path.join(REPO, "scripts", "msrun_launcher.sh"), command, str(STAGES),
                             str(STAGES), "127.0.0.1", str(args.port), "0", log_dir, "True", "600"],
                            cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"error: msrun failed ({result.returncode}); worker logs in {log_dir}\n{result.stderr[-2000:]}")
    with open(output, encoding="utf-8") as stream:
        return {int(micro): seconds for micro, seconds in json.load(stream).items()}


def main(argv=None):
    args = parse_args(argv)
    if args.worker_output and os.environ.get("MS_WORKER_NUM"):
        return worker(args)
    from mindformers.parallel.pipeline_schedule import bubble_fraction
    reference = single_process(args)
    with tempfile.TemporaryDirectory() as folder:
        times = launch_workers(args, os.path.join(folder, "times.json"))
    print(f"model: {args.layers} layers, hidden {args.hidden}, seq {args.seq}, {args.rows} rows per step, "
          f"{args.mode} mode")
    print(f"pp1 (one process): {reference * 1e3:.0f} ms/step")
    print("micro_batch_num  pp2 ms/step  ratio to pp1  ideal bubble  ideal ratio")
    for micro in args.micro:
        ideal = (micro + STAGES - 1) / (micro * STAGES)
        print(f"{micro:15d}  {times[micro] * 1e3:11.0f}  {times[micro] / reference:12.2f}  "
              f"{bubble_fraction(STAGES, micro):12.3f}  {ideal:11.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
