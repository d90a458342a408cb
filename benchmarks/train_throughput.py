"""Training throughput of our Llama stack against HF transformers + PyTorch, measured in the same run.

One training step = forward + backward + AdamW update (with global-norm clipping on both sides).
Ours: LlamaForCausalLM + AdamW + MFTrainOneStepCell in MindSpore graph mode.
Theirs: transformers.LlamaForCausalLM + torch.optim.AdamW (eager PyTorch, its default attention).
Both run fp32 on the CPU with the same number of threads (the machine's core count unless --threads).
Warmup steps (and graph compilation) are excluded from the timing; timed steps alternate between the two
sides so that other load on the machine slows both alike.

    python benchmarks/train_throughput.py                       # 8 layers, hidden 512, vocab 32000, seq 256, batch 2
    python benchmarks/train_throughput.py --layers 1 --hidden 64 --heads 4 --vocab 512 --seq 32 --steps 1 --warmup 1

Prints tokens/s of both and MFU of both against the machine's fp32 GEMM peak: threads x nominal clock x the
FLOPs per cycle that one core's measured matmul shows (its best over sizes, timed by thread CPU time so that other
load does not halve it; rounds before and after the steps, all printed with their spread); each side's CPU
seconds per step and MFU by CPU time (other processes on the machine stretch wall time, not CPU time); and the line
`ratio ours/theirs: X.XX` (tokens/s of ours divided by tokens/s of theirs; > 1 means we are faster).
"""
import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("GLOG_v", "3")

import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def core_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=None, help="key/value heads (GQA); default: --heads")
    parser.add_argument("--intermediate", type=int, default=None,
                        help="FFN size; default: Llama's rule (2/3 of 4*hidden, multiple of 256)")
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per side")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per side (after compilation)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for both sides; default: core count")
    parser.add_argument("--gemm-sizes", type=int, nargs="+", default=[1024, 2048],
                        help="square matmul sizes of the wall-clock GEMM figures printed as context")
    parser.add_argument("--peak-sizes", type=int, nargs="+", default=[1024, 2048],
                        help="square matmul sizes of the per-core peak that MFU divides by (best over sizes)")
    parser.add_argument("--peak-rounds", type=int, default=3,
                        help="per-core peak measurements before and after the steps (median counts, spread printed)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layerwise", action="store_true",
                        help="also time ours in PyNative with context.layerwise_compile, alternating with the others")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    args.threads = args.threads or core_count()
    return args


def model_config(args):
    from mindformers.models.llama import LlamaConfig  # pylint: disable=import-outside-toplevel
    return LlamaConfig(batch_size=args.batch, seq_length=args.seq, hidden_size=args.hidden, num_layers=args.layers,
                       num_heads=args.heads, n_kv_heads=args.kv_heads, intermediate_size=args.intermediate,
                       vocab_size=args.vocab, compute_dtype="float32", layernorm_compute_type="float32",
                       softmax_compute_type="float32", rotary_dtype="float32", param_init_type="float32",
                       use_fused_rms_norm=False)


def batch_tokens(args):
    """(batch, seq+1) random token ids; ids 1.. so that no position counts as padding (pad id 0)."""
    return np.random.default_rng(args.seed).integers(1, args.vocab, (args.batch, args.seq + 1)).astype(np.int32)


def timed_alternately(steps, warmup, *step_fns):
    """Warm each step function up, then time them in turns (ours, theirs, ours, ...) so that a change in the
    machine's load hits both sides alike. Each call must block until its step is done.
    Returns, per function, (median seconds per timed step, losses): the median, so that one step that
    another process slowed down does not decide the result."""
    losses = [[fn() for _ in range(warmup)] for fn in step_fns]
    seconds = [[] for _ in step_fns]
    for _ in range(steps):
        for index, fn in enumerate(step_fns):
            start = time.perf_counter()
            losses[index].append(fn())
            seconds[index].append(time.perf_counter() - start)
    return [(statistics.median(times), fn_losses) for times, fn_losses in zip(seconds, losses)]


def build_train_cell(args, config, recompute_config=None):
    """Our model, AdamW and MFTrainOneStepCell, as a training run builds them; returns (train cell, model)."""
    from mindformers.core.optim import AdamW  # pylint: disable=import-outside-toplevel
    from mindformers.models.llama import LlamaForCausalLM  # pylint: disable=import-outside-toplevel
    from mindformers.wrapper import MFTrainOneStepCell  # pylint: disable=import-outside-toplevel

    np.random.seed(args.seed)
    model = LlamaForCausalLM(config, recompute_config=recompute_config)
    model.set_train(True)
    optimizer = AdamW(model.trainable_params(), learning_rate=args.lr, betas=(0.9, 0.95), eps=1e-8,
                      weight_decay=args.weight_decay)
    cell = MFTrainOneStepCell(model, optimizer, use_clip_grad=True, max_grad_norm=1.0)
    cell.set_train(True)
    return cell, model


def use_layerwise(cell, model):
    """What context.layerwise_compile does to a training run (the trainer calls the same function)."""
    from mindformers.models.decoder.layerwise import compile_layerwise  # pylint: disable=import-outside-toplevel
    return compile_layerwise(model, cell)


def build_ours(args, config, tokens, layerwise=False, recompute_config=None):
    """Our step function (first call compiles), its first loss and seconds, the model's parameter count. With
    `layerwise` the step runs in PyNative with context.layerwise_compile, else in graph mode; each step sets the
    mode it runs in, so both can alternate in one process."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    mode = ms.PYNATIVE_MODE if layerwise else ms.GRAPH_MODE
    ms.set_context(mode=mode)
    cell, model = build_train_cell(args, config, recompute_config)
    if layerwise:
        use_layerwise(cell, model)
    input_ids = ms.Tensor(tokens)

    def step():
        ms.set_context(mode=mode)
        loss = cell(input_ids)[0]
        return float(loss.asnumpy())

    start = time.perf_counter()
    first_loss = step()  # compiles the graph
    compile_seconds = time.perf_counter() - start
    return step, first_loss, compile_seconds, model.num_parameters()


def build_theirs(args, config, tokens, attn_implementation="sdpa"):
    import torch  # pylint: disable=import-outside-toplevel
    import transformers  # pylint: disable=import-outside-toplevel

    torch.manual_seed(args.seed)
    hf_config = transformers.LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, intermediate_size=config.ffn_size,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        num_key_value_heads=config.kv_heads, max_position_embeddings=config.seq_length,
        rms_norm_eps=config.rms_norm_eps, rope_theta=config.theta, tie_word_embeddings=False,
        attention_bias=False, mlp_bias=False, initializer_range=config.initializer_range, use_cache=False)
    model = transformers.LlamaForCausalLM._from_config(  # pylint: disable=protected-access
        hf_config, attn_implementation=attn_implementation).float()
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() > 1]
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    data = torch.from_numpy(tokens.astype(np.int64))
    inputs, targets = data[:, :-1], data[:, 1:]

    def step():
        optimizer.zero_grad(set_to_none=True)
        logits = model(input_ids=inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return float(loss.detach())

    return step, model.config._attn_implementation  # pylint: disable=protected-access


def torch_gemm_flops(sizes):
    import torch  # pylint: disable=import-outside-toplevel
    from mindformers.core.flops import best_matmul_flops  # pylint: disable=import-outside-toplevel
    results = {}
    for size in sizes:
        a, b = torch.randn(size, size), torch.randn(size, size)
        results[size] = best_matmul_flops(lambda a=a, b=b: torch.mm(a, b), size)
    return results


def wall_clock_gemm(sizes):
    """What MindSpore's and torch's matmuls reach right now with the training threads by the wall clock, per size
    (printed as context, not used for MFU: another process on one of the cores halves it)."""
    from mindformers.core.flops import mindspore_gemm_flops  # pylint: disable=import-outside-toplevel
    ours, theirs = mindspore_gemm_flops(sizes), torch_gemm_flops(sizes)
    return "; ".join(f"{size}^2 mindspore {ours[size] / 1e9:.0f} torch {theirs[size] / 1e9:.0f}" for size in sizes)


def per_core_peaks(sizes, rounds):
    """Per round, the best one-core FLOP/s over the sizes (timed by thread CPU time: see per_core_gemm_flops)."""
    from mindformers.core.flops import per_core_gemm_flops  # pylint: disable=import-outside-toplevel
    return [max(per_core_gemm_flops(sizes).values()) for _ in range(rounds)]


def mfu_peak(per_core, threads):
    """(peak FLOP/s, its text, where it comes from) for MFU: threads x the nominal clock x the FLOPs per cycle the
    measured per-core rate shows (a figure that does not move between runs: the measured one follows the host's
    clock, ~145 to ~168 GFLOP/s per core on the 2-core VM); the measured median x threads where the clock is
    unknown."""
    from mindformers.core.flops import flops_per_cycle, nominal_clock_hz  # pylint: disable=C0415
    clock = nominal_clock_hz()
    if clock is None:
        return per_core * threads, f"{per_core * threads / 1e9:.0f} GFLOP/s", "measured median per core x threads"
    cycle = flops_per_cycle(per_core, clock)
    peak = threads * clock * cycle
    return peak, f"{peak / 1e9:.0f} GFLOP/s", (
        f"{threads} threads x {clock / 1e6:.0f} MHz nominal x {cycle} FLOP/cycle; measured per core "
        f"{per_core / 1e9:.1f} GFLOP/s = {100 * per_core / (clock * cycle):.0f}% of that")


def spread(values):
    """(max - min) / median: how far apart repeated measurements of one thing landed."""
    return (max(values) - min(values)) / statistics.median(values)


class CpuSecondsRecorder:
    """Wraps a step function and keeps the process CPU seconds of each call (all threads): the work a step
    costs, which other processes on the machine do not stretch as they stretch its wall time."""

    def __init__(self, step_fn):
        self.step_fn = step_fn
        self.seconds = []

    def __call__(self):
        start = time.process_time()
        result = self.step_fn()
        self.seconds.append(time.process_time() - start)
        return result

    def median(self, last):
        return statistics.median(self.seconds[-last:])


def main(argv=None):
    args = parse_args(argv)
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    import torch  # pylint: disable=import-outside-toplevel
    from mindformers.core.flops import train_flops_per_token  # pylint: disable=C0415

    ms.set_device("CPU")
    # PyNative steps (--layerwise) run ops synchronously, as build_context sets it for CPU training runs.
    ms.set_context(mode=ms.GRAPH_MODE, pynative_synchronize=True)
    ms.device_context.cpu.op_tuning.threads_num(args.threads)
    torch.set_num_threads(args.threads)
    print(f"threads: {args.threads} (machine cores: {core_count()}; MindSpore CPU kernels and torch both set to it)")

    config = model_config(args)
    tokens = batch_tokens(args)
    tokens_per_step = args.batch * args.seq
    flops_per_token = train_flops_per_token(config)
    print(f"model: layers={config.num_layers} hidden={config.hidden_size} heads={config.num_heads} "
          f"kv_heads={config.kv_heads} ffn={config.ffn_size} vocab={config.vocab_size} seq={args.seq} "
          f"batch={args.batch} fp32; train FLOPs/token={flops_per_token / 1e9:.3f} G")

    # The MFU denominator comes from one core's fp32 GEMM rate timed by thread CPU time (see mfu_peak): a wall-clock
    # two-thread peak lands near half whenever another process holds a core. Rounds before and after the steps.
    peak_rounds = per_core_peaks(args.peak_sizes, args.peak_rounds)
    wall_before = wall_clock_gemm(args.gemm_sizes)
    ours_step, first_loss, compile_seconds, params = build_ours(args, config, tokens)
    steps = [CpuSecondsRecorder(ours_step)]
    if args.layerwise:
        layerwise_step, layerwise_first_loss, layerwise_first_seconds, _ = build_ours(args, config, tokens, True)
        steps.append(CpuSecondsRecorder(layerwise_step))
    theirs_step, attn_impl = build_theirs(args, config, tokens)
    steps.append(CpuSecondsRecorder(theirs_step))
    (ours_seconds, ours_losses), *layerwise_result, (theirs_seconds, theirs_losses) = timed_alternately(
        args.steps, args.warmup, *steps)
    ours_losses = [first_loss] + ours_losses
    wall_after = wall_clock_gemm(args.gemm_sizes)
    peak_rounds += per_core_peaks(args.peak_sizes, args.peak_rounds)
    per_core = statistics.median(peak_rounds)
    peak, peak_text, peak_source = mfu_peak(per_core, args.threads)
    print(f"GEMM per core (fp32, thread CPU time, sizes {args.peak_sizes}), {args.peak_rounds} rounds before "
          f"and {args.peak_rounds} after the steps: " + ", ".join(f"{x / 1e9:.1f}" for x in peak_rounds) +
          f" GFLOP/s; median {per_core / 1e9:.1f}, spread {100 * spread(peak_rounds):.1f}%")
    print(f"GEMM peak used for MFU: {peak_text} ({peak_source})")
    print(f"GEMM by the wall clock at {args.threads} threads, GFLOP/s (context; load on the machine lowers it): "
          f"before the steps {wall_before}; after {wall_after}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average (1 min) at the end: {load:.1f}")

    def describe(seconds, recorder):
        per_core_peak = peak / args.threads
        tps = tokens_per_step / seconds
        cpu = recorder.median(args.steps)
        return (f"{seconds * 1e3:.1f} ms/step, {tps:.1f} tokens/s, MFU {100 * tps * flops_per_token / peak:.1f}% "
                f"of {peak_text}; CPU {cpu:.2f} s/step, MFU by CPU time "
                f"{100 * tokens_per_step * flops_per_token / (cpu * per_core_peak):.1f}%"), tps

    print(f"parameters: {params / 1e6:.2f} M; steps timed: {args.steps} per side after {args.warmup} warmup, "
          "alternating; times are medians")
    ours_text, ours_tps = describe(ours_seconds, steps[0])
    theirs_text, theirs_tps = describe(theirs_seconds, steps[-1])
    print(f"ours   (MindSpore {ms.__version__}, graph mode, first step incl. compile {compile_seconds:.1f} s): "
          f"{ours_text}, losses {fmt(ours_losses)}")
    print(f"theirs (torch {torch.__version__}, transformers, attn={attn_impl}): {theirs_text}, "
          f"losses {fmt(theirs_losses)}")
    if args.layerwise:
        layerwise_seconds, layerwise_losses = layerwise_result[0]
        layerwise_text, layerwise_tps = describe(layerwise_seconds, steps[1])
        print(f"ours   (PyNative, context.layerwise_compile, first step incl. tracing {layerwise_first_seconds:.1f} "
              f"s): {layerwise_text}, losses {fmt([layerwise_first_loss] + layerwise_losses)}")
        print(f"ratio ours layerwise/graph: {layerwise_tps / ours_tps:.2f}")
        print(f"ratio ours layerwise/theirs: {layerwise_tps / theirs_tps:.2f}")
    print(f"ratio ours/theirs: {ours_tps / theirs_tps:.2f}")
    return ours_tps / theirs_tps


def fmt(losses):
    return "[" + ", ".join(f"{x:.3f}" for x in losses) + "]"


if __name__ == "__main__":
    main()
