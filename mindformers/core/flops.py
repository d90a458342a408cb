"""Model FLOPs per token and a measured matmul peak, for MFU."""
import functools
import math
import time

import numpy as np


def train_flops_per_token(config, seq_length=None):
    """Forward+backward FLOPs per token: 6 x matmul parameters plus the attention score/context matmuls. The
    model config says what one layer multiplies by (its projections and MLP) and how wide attention is."""
    seq = seq_length or config.seq_length
    layers = config.num_layers
    matmul_params = layers * config.matmul_parameters_per_layer() + config.vocab_size * config.hidden_size
    attention = layers * 2 * 2 * seq * config.q_size  # QK^T and PV, per token, forward
    return 6 * matmul_params + 3 * attention


GEMM_SIZES = (512, 1024, 2048)


def best_matmul_flops(run_matmul, size, min_seconds=0.5, min_trials=5):
    """Best FLOP/s of `run_matmul()` (one blocking size x size x size matmul) over repeated trials: at least
    min_trials of them and at least min_seconds in all, so that a moment when another process held a core does
    not decide the figure."""
    run_matmul()  # warm up: first-call allocation and kernel selection
    best, trials, spent = float("inf"), 0, 0.0
    while trials < min_trials or spent < min_seconds:
        start = time.perf_counter()
        run_matmul()
        elapsed = time.perf_counter() - start
        best, trials, spent = min(best, elapsed), trials + 1, spent + elapsed
    return 2.0 * size ** 3 / best


def mindspore_gemm_flops(sizes=GEMM_SIZES, min_seconds=0.5, dtype="float32"):
    """{size: best FLOP/s} of square matmuls on the current device, with the thread setting in force (measure after
    the context is set, as training runs): MindSpore's MatMul, or the faster product dense layers use on CPU in
    float32 (kernels/cpu_linear.py) where it serves."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from mindspore import ops  # pylint: disable=import-outside-toplevel
    from mindformers.kernels import cpu_linear  # pylint: disable=import-outside-toplevel
    products = [ops.MatMul(transpose_b=True)]
    if cpu_linear.available(getattr(ms, dtype)):
        products.append(cpu_linear.CpuLinearProduct())
    results = {}
    for size in sizes:
        a = ms.Tensor(np.random.default_rng(0).standard_normal((size, size)).astype(dtype))
        b = ms.Tensor(np.random.default_rng(1).standard_normal((size, size)).astype(dtype))
        results[size] = max(best_matmul_flops(lambda a=a, b=b, product=product: product(a, b).asnumpy(), size,
                                              min_seconds) for product in products)
    return results


def thread_time_flops(run_matmul, size, trials):
    """Best FLOP/s of `run_matmul()` (a size^3 matmul on the calling thread) by that thread's CPU time."""
    run_matmul()  # warm up: first-call allocation and kernel selection
    best = float("inf")
    for _ in range(trials):
        start = time.thread_time()
        run_matmul()
        best = min(best, time.thread_time() - start)
    return 2.0 * size ** 3 / max(best, 1e-9)


def onednn_sgemm():
    """oneDNN's sgemm from the library MindSpore ships (single-threaded in that build) through ctypes, or None."""
    import ctypes  # pylint: disable=import-outside-toplevel
    import os  # pylint: disable=import-outside-toplevel
    from mindformers.kernels import build  # pylint: disable=import-outside-toplevel
    folder = build.onednn_dir()
    if folder is None:
        return None
    sgemm = ctypes.CDLL(os.path.join(folder, "libdnnl.so.3")).dnnl_sgemm
    size_t, pointer, scalar = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float
    sgemm.argtypes = [ctypes.c_char, ctypes.c_char, size_t, size_t, size_t, scalar, pointer, size_t, pointer, size_t,
                      scalar, pointer, size_t]
    return sgemm


def per_core_gemm_flops(sizes=(1024, 2048), trials=5):
    """{size: best FLOP/s of one core} for square fp32 matmuls, timed by the CPU time of the calling thread: the
    better of torch's matmul on one thread and oneDNN's sgemm (what dense layers run on CPU, kernels/cpu_linear.py;
    torch's library reached half of its rate on an AMD host).

    Both run in the calling thread, so time.thread_time() counts only the cycles the matmul itself ran: another
    process holding the core stretches the wall time but not this figure (a two-thread wall-clock peak is bimodal
    on a shared 2-core machine: one slow thread holds the other back). The machine's peak is this times the cores
    training uses. Needs torch (the benchmarks' reference)."""
    import torch  # pylint: disable=import-outside-toplevel
    sgemm = onednn_sgemm()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = {}
        for size in sizes:
            generator = torch.Generator().manual_seed(size)
            a = torch.randn(size, size, generator=generator)
            b = torch.randn(size, size, generator=generator)
            results[size] = thread_time_flops(lambda a=a, b=b: torch.mm(a, b), size, trials)
            if sgemm is not None:
                c = torch.empty(size, size)
                results[size] = max(results[size], thread_time_flops(
                    lambda a=a, b=b, c=c: sgemm(b"N", b"N", size, size, size, 1.0, a.data_ptr(), size, b.data_ptr(),
                                                size, 0.0, c.data_ptr(), size), size, trials))
        return results
    finally:
        torch.set_num_threads(threads)


def nominal_clock_hz(cpuinfo="/proc/cpuinfo",
                     base_frequency="/sys/devices/system/cpu/cpu0/cpufreq/base_frequency"):
    """The cores' nominal clock, or None: cpufreq's base_frequency (kHz) where the driver gives it (on bare metal
    /proc/cpuinfo's "cpu MHz" is the current, changing clock), else "cpu MHz" (what a VM reports: its TSC rate)."""
    try:
        with open(base_frequency, encoding="utf-8") as value:
            return float(value.read()) * 1e3
    except (OSError, ValueError):
        pass
    try:
        with open(cpuinfo, encoding="utf-8") as lines:
            for line in lines:
                if line.startswith("cpu MHz"):
                    return float(line.split(":", 1)[1]) * 1e6
    except (OSError, ValueError):
        pass
    return None


# The measured rate over the nominal clock lands between LOWEST_SHARE of the core's peak FLOPs per cycle (an sgemm
# short of peak: 0.80 on an Intel host) and twice that (a core in turbo: up to 1.46 on the 2-core AMD host, where
# rounding to the nearest power of two in log scale split at 1.41 and printed 332 or 665 GFLOP/s from run to run).
LOWEST_SHARE = 0.78


def flops_per_cycle(per_core_flops, clock_hz):
    """fp32 FLOPs one core retires per cycle at its GEMM peak, from a measured rate: a power of two (vector lanes x
    FMA units x 2), the one p with LOWEST_SHARE p <= measured rate / nominal clock < 2 LOWEST_SHARE p. Turbo and
    a GEMM somewhat below peak move the measurement by less than that window, which makes this, times the clock, a
    peak that does not vary from run to run."""
    return 2 ** max(0, math.floor(math.log2(per_core_flops / clock_hz / LOWEST_SHARE)))


@functools.lru_cache(maxsize=None)
def measure_gemm_peak_flops(sizes=GEMM_SIZES, min_seconds=0.5, dtype="float32"):
    """The MFU denominator: the best FLOP/s over several square matmul sizes (a single size and few trials land
    on a slow moment often enough to make the figure bimodal on a shared CPU)."""
    return max(mindspore_gemm_flops(sizes, min_seconds, dtype).values())
