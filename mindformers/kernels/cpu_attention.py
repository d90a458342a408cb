"""Fused exact attention on CPU: cpu_attention.cc as MindSpore "aot" Custom ops (forward and backward), in graph
and PyNative mode. The same results as blockwise_attention.BlockwiseAttention, which stays the path wherever this
kernel cannot run (another device, another dtype, no compiler), in another layout: tokens before heads."""
import mindspore as ms
from mindspore import nn, ops

from mindformers.kernels import build

SOURCE = "cpu_attention.cc"


def available(*dtypes):
    """Whether the fused kernel can serve attention computed in `dtypes` here (build.serves)."""
    return build.serves(SOURCE, dtypes)


def same_shapes(*shapes):
    return tuple(shapes)


def float32s(*dtypes):
    return tuple(ms.float32 for _ in dtypes)


def forward_shapes(query, key, value, keep, slopes, config):  # pylint: disable=unused-argument
    """context like the queries; the log-sum-exp (b, heads, s, 1)."""
    return query, [query[0], query[2], query[1], 1]


def forward_dtypes(*dtypes):
    return dtypes[0], ms.float32


def backward_shapes(query, key, value, *_):
    return query, key, value


def backward_dtypes(*dtypes):
    return dtypes[0], dtypes[1], dtypes[2]


class CpuFusedAttention(nn.Cell):
    """softmax(scale * q k^T + bias, causal / sliding-window / padding mask) v as one C++ kernel.

    Inputs: query (b, s, heads, d), key and value (b, s, kv_heads, d) float32 (GQA: heads a multiple of
    kv_heads), keep (b or 1, s) float: 0 where a key is padding. Output (context (b, s, heads, d), log-sum-exp
    (b, heads, s, 1)). Tokens come before heads (unlike BlockwiseAttention's layout), as the projections give them
    and the output projection takes them: no transposes around the op, forward or backward (the kernel lays its
    GEMMs' operands out itself, cheaper than MindSpore's transposes). `negative_slopes` (1, heads, 1, 1) float32
    gives ALiBi's bias -slope * (query column - key column). A query row that sees no key gets a zero context."""

    def __init__(self, scale, sliding_window=0, negative_slopes=None, library=None):
        super().__init__()
        library = library or build.library(SOURCE)  # another build of the kernel: benchmarks compare versions
        self.negative_slopes = negative_slopes
        self.config = ms.Tensor([scale, float(sliding_window or 0), float(build.kernel_threads())], ms.float32)
        backward = ops.Custom(f"{library}:AttentionBackward", out_shape=backward_shapes,
                              out_dtype=backward_dtypes, func_type="aot")

        def bprop(query, key, value, keep, slopes, config, out, dout):
            d_query, d_key, d_value = backward(query, key, value, keep, slopes, config, out[0], out[1], dout[0])
            return d_query, d_key, d_value, ops.zeros_like(keep), ops.zeros_like(slopes), ops.zeros_like(config)

        self.forward = ops.Custom(f"{library}:AttentionForward", out_shape=forward_shapes,
                                  out_dtype=forward_dtypes, func_type="aot", bprop=bprop)

    def construct(self, query, key, value, keep):
        heads = query.shape[2]
        if self.negative_slopes is None:
            slopes = ops.zeros((heads,), ms.float32)
        else:
            slopes = ops.reshape(self.negative_slopes, (heads,))
        return self.forward(query, key, value, ops.cast(keep, ms.float32), slopes, self.config)
