"""Model FLOPs per token and a measured matmul peak, for MFU."""
import functools
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


@functools.lru_cache(maxsize=None)
def measure_gemm_peak_flops(size=1024, repeats=5, dtype="float32"):
    """Best observed FLOP/s of a square MindSpore matmul on the current device (the denominator of MFU)."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from mindspore import ops  # pylint: disable=import-outside-toplevel
    a = ms.Tensor(np.random.default_rng(0).standard_normal((size, size)).astype(dtype))
    b = ms.Tensor(np.random.default_rng(1).standard_normal((size, size)).astype(dtype))
    ops.matmul(a, b).asnumpy()  # warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        ops.matmul(a, b).asnumpy()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size ** 3 / best
