"""Causal attention alone, forward + backward, at long sequences: our fused CPU kernel (mindformers/kernels/), our
composed blockwise attention and PyTorch's scaled_dot_product_attention (its fused CPU flash-attention kernel), all
in this process, timed in turns (train_throughput.timed_alternately) so that the machine's load hits every side alike.

    python benchmarks/attention_kernel.py                          # seq 2048 and 8192, 8 heads of 64, batch 1
    python benchmarks/attention_kernel.py --seqs 1024 --kv-heads 2 --no-composed
    python benchmarks/attention_kernel.py --no-composed --baseline-library /tmp/old.so   # a kernel change's effect

Ours run in graph mode (one compiled forward + backward each). Prints ms per forward + backward and the ratios
(theirs / ours: above 1 ours is faster) per length.
"""
import argparse
import os
import sys

import numpy as np

os.environ.setdefault("GLOG_v", "3")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import train_throughput  # noqa: E402  pylint: disable=wrong-import-position,import-error  (this script's folder)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seqs", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=None)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--baseline-library", default=None,
                        help="also time this other build of the kernel (a .so copied from the kernel cache before a "
                             "change; one taking tokens before heads, as since that layout came), as 'baseline kernel'")
    parser.add_argument("--no-composed", action="store_true", help="skip the composed path (slow at long lengths)")
    args = parser.parse_args(argv)
    args.threads = args.threads or train_throughput.core_count()
    args.kv_heads = args.kv_heads or args.heads
    return args


def ours(cell, inputs, tokens_first=False):
    """A function running one compiled forward + backward of `cell` (context . weights summed) and blocking; with
    `tokens_first` (the fused kernel's layout) q, k, v and the weights go in as (b, s, heads, d)."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    if tokens_first:
        inputs = [np.ascontiguousarray(x.swapaxes(1, 2)) if x.ndim == 4 else x for x in inputs]
    query, key, value, keep, weights = (ms.Tensor(x) for x in inputs)

    class Loss(ms.nn.Cell):
        def __init__(self):
            super().__init__()
            self.attention = cell

        def construct(self, query, key, value):
            return (self.attention(query, key, value, keep)[0] * weights).sum()

    class GradientSum(ms.nn.Cell):
        """The gradients' sum as one graph-mode cell, as a training step runs: through ms.jit the caller's thread
        spins waiting for the result (MindSpore 2.10, AsyncRQueue::Wait: a third of the CPU samples), taking one of
        the two cores from the kernel's threads."""

        def __init__(self):
            super().__init__()
            self.loss = Loss()
            self.grad = ms.ops.GradOperation(get_all=True)

        def construct(self, query, key, value):
            d_query, d_key, d_value = self.grad(self.loss)(query, key, value)
            return d_query.sum() + d_key.sum() + d_value.sum()

    gradient_sum = GradientSum()

    def step():
        return float(gradient_sum(query, key, value).asnumpy())
    return step


def theirs(inputs, repeats):
    import torch  # pylint: disable=import-outside-toplevel
    query, key, value = (torch.tensor(x, requires_grad=True) for x in inputs[:3])
    weights = torch.tensor(inputs[4])

    def step():
        query.grad = key.grad = value.grad = None
        context = torch.nn.functional.scaled_dot_product_attention(
            query, key.repeat_interleave(repeats, 1), value.repeat_interleave(repeats, 1), is_causal=True)
        (context * weights).sum().backward()
        return float(query.grad.sum() + key.grad.sum() + value.grad.sum())
    return step


def main(argv=None):
    args = parse_args(argv)
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    import torch  # pylint: disable=import-outside-toplevel
    from mindformers.kernels import cpu_attention  # pylint: disable=import-outside-toplevel
    from mindformers.models.modules.blockwise_attention import BlockwiseAttention  # pylint: disable=C0415
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.device_context.cpu.op_tuning.threads_num(args.threads)
    torch.set_num_threads(args.threads)
    if not cpu_attention.available(ms.float32):
        sys.exit("error: the fused CPU attention kernel is not available here (see the warning above)")
    repeats, scale = args.heads // args.kv_heads, args.head_dim ** -0.5
    print(f"threads: {args.threads}; heads={args.heads} kv_heads={args.kv_heads} head_dim={args.head_dim} batch 1 "
          f"fp32, causal; forward + backward, {args.steps} timed in turns after 1 warmup, medians; load average "
          f"{os.getloadavg()[0]:.1f} at start")
    for seq in args.seqs:
        rng = np.random.default_rng(seq)
        inputs = [rng.standard_normal((1, heads, seq, args.head_dim)).astype(np.float32)
                  for heads in (args.heads, args.kv_heads, args.kv_heads)]
        inputs += [np.ones((1, seq), np.float32), rng.standard_normal(inputs[0].shape).astype(np.float32)]
        sides = {"fused kernel": ours(cpu_attention.CpuFusedAttention(scale), inputs, tokens_first=True),
                 "torch SDPA": theirs(inputs, repeats)}
        if args.baseline_library:
            sides["baseline kernel"] = ours(cpu_attention.CpuFusedAttention(scale, library=args.baseline_library),
                                            inputs, tokens_first=True)
        if not args.no_composed:
            sides["composed"] = ours(BlockwiseAttention(repeats, scale), inputs)
        results = dict(zip(sides, train_throughput.timed_alternately(args.steps, 1, *sides.values())))
        line = ", ".join(f"{name} {seconds * 1e3:.0f} ms" for name, (seconds, _) in results.items())
        fused = results["fused kernel"][0]
        ratios = ", ".join(f"{name}/fused {seconds / fused:.2f}" for name, (seconds, _) in results.items()
                           if name != "fused kernel")
        # every side computed the same gradients (their sums as a check)
        sums = [losses[-1] for _, losses in results.values()]
        agree = "agree" if np.allclose(sums, sums[0], rtol=1e-3, atol=1e-3) else f"DIFFER {sums}"
        print(f"seq {seq:5d}: {line}; {ratios}; gradient sums {agree}", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
