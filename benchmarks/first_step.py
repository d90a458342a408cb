"""The first training steps with context.layerwise_compile, piece by piece: where the first step's extra time goes.

cold_start.py's layerwise model (train_throughput.py's: hidden 512, vocab 32000, fp32, AdamW with clipping) is built
in this process (PyNative, layerwise compilation, as the trainer sets it), then runs --steps steps. Per step and per
piece it prints wall seconds, CPU seconds (all threads) and minor page faults (getrusage: first touches of fresh
memory, which the first step pays for every buffer it is the first to use):

    imports             MindSpore and mindformers' modules (before the build)
    build               the model, AdamW and the train cell (before step 1)
    forward+backward    the loss and the gradients (value_and_grad), the layer graph's trace included
      layer forwards    the decoder layers' forward calls (their graphs; the trace in step 1)
        trace           tracing, compiling and first running the layer graph (step 1 only, when it works)
      head+loss         the head and the loss (the chunked head computes its gradients here too)
    optimizer           AdamW's update of every parameter
    rest                the gradient norm, clipping and the step's bookkeeping (the step minus the two above)

and the ratio of the first step to the last one (wall, CPU; their page faults side by side).

    python benchmarks/first_step.py                                  # 8 layers, seq 256, 3 steps
    python benchmarks/first_step.py --seq 1024 --attention exact     # force a path (long_sequence.py's choices)
    python benchmarks/first_step.py --layers 1 --hidden 64 --heads 4 --vocab 512 --seq 16 --batch 1 --steps 2
"""
import argparse
import functools
import importlib
import os
import resource
import sys
import time

os.environ.setdefault("GLOG_v", "3")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import cold_start  # noqa: E402  pylint: disable=wrong-import-position,import-error  (this script's folder)
import long_sequence  # noqa: E402  pylint: disable=wrong-import-position,import-error
import train_throughput  # noqa: E402  pylint: disable=wrong-import-position,import-error

# (label, piece): the layer forwards (the trace among them) and the head + loss run inside forward+backward; what
# forward+backward has beyond them is mostly the backward.
PIECES = (("  forward+backward", "forward+backward"), ("    of which layer forwards", "layers"),
          ("      of which trace", "trace"), ("    of which head+loss", "head+loss"), ("  optimizer", "optimizer"))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads; default: core count")
    parser.add_argument("--attention", choices=["auto", "blockwise", "composed", "exact"], default="auto",
                        help="the config's default (auto), or one path forced as long_sequence.py forces it")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be >= 2 (the first step is compared with a later one)")
    return args


def usage():
    """(wall s, CPU s, minor page faults) so far."""
    return time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def since(start):
    return tuple(now - then for now, then in zip(usage(), start))


class Meter:
    """Sums the usage of named pieces of the current step; a piece is a function wrapped by `wrap`."""

    def __init__(self):
        self.pieces = {}

    def wrap(self, name, function):
        @functools.wraps(function)
        def metered(*args, **kwargs):
            start = usage()
            try:
                return function(*args, **kwargs)
            finally:
                self.pieces[name] = tuple(a + b for a, b in zip(self.pieces.get(name, (0.0, 0.0, 0)), since(start)))
        return metered

    def take(self):
        """The pieces of the step just run; starts the next step's."""
        pieces, self.pieces = self.pieces, {}
        return pieces


def import_ours():
    """MindSpore and the modules the build imports, so that the build's figures are the build's own."""
    for name in ("mindspore", "mindformers.models.llama", "mindformers.core.optim", "mindformers.wrapper",
                 "mindformers.models.decoder.layerwise"):
        importlib.import_module(name)


def metered_train_cell(args, meter):
    """cold_start.py's layerwise model, built as the trainer builds it, with its pieces wrapped by `meter`; returns
    (train cell, the model's tokens, the attention path)."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from mindformers.models.decoder.layerwise import LayerGraph  # pylint: disable=import-outside-toplevel
    options = cold_start.throughput_args(args, args.layers)
    cold_start.set_context(True, options.threads)
    config = train_throughput.model_config(options)
    attention = long_sequence.pick_attention(config, args.attention)
    cell, model = train_throughput.build_train_cell(options, config)
    train_throughput.use_layerwise(cell, model)
    LayerGraph._trace_and_run = meter.wrap("trace", LayerGraph._trace_and_run)  # pylint: disable=protected-access
    LayerGraph.__call__ = meter.wrap("layers", LayerGraph.__call__)
    model.head_loss = meter.wrap("head+loss", model.head_loss)
    cell.pynative_loss_and_grads = meter.wrap("forward+backward", cell.pynative_loss_and_grads)
    cell.optimizer.construct = meter.wrap("optimizer", cell.optimizer.construct)
    return cell, ms.Tensor(train_throughput.batch_tokens(options)), attention


def line(name, wall, cpu, faults):
    return f"{name:<28} wall {wall:7.2f} s | CPU {cpu:7.2f} s | minor faults {faults:9d}"


def main(argv=None):
    args = parse_args(argv)
    meter = Meter()
    start = usage()
    import_ours()
    imported = since(start)
    start = usage()
    cell, tokens, attention = metered_train_cell(args, meter)
    built = since(start)
    print(f"model: layers={args.layers} hidden={args.hidden} heads={args.heads} vocab={args.vocab} seq={args.seq} "
          f"batch={args.batch} fp32; attention: {attention}; PyNative with context.layerwise_compile", flush=True)
    print(line("imports", *imported), flush=True)
    print(line("build", *built), flush=True)
    steps = []
    for number in range(1, args.steps + 1):
        start = usage()
        loss = float(cell(tokens)[0].asnumpy())
        total, pieces = since(start), meter.take()
        steps.append(total)
        print(line(f"step {number}", *total) + f" | loss {loss:.4f}", flush=True)
        for label, name in PIECES:
            print(line(label, *pieces.get(name, (0.0, 0.0, 0))), flush=True)
        rest = [whole - sum(pieces.get(name, (0, 0, 0))[index] for name in ("forward+backward", "optimizer"))
                for index, whole in enumerate(total)]
        print(line("  rest", *rest), flush=True)
    first, last = steps[0], steps[-1]
    print(f"ratio first/step {args.steps}: wall {first[0] / last[0]:.2f}, CPU {first[1] / last[1]:.2f} (minor faults "
          f"{first[2]} vs {last[2]})", flush=True)
    return steps


if __name__ == "__main__":
    main()
