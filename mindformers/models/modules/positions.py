"""How attention sees token positions: the interface every position encoding offers attention, no encoding at all
(learned absolute positions are added to the embeddings instead), and ALiBi's linear biases.

Attention asks its position encoding for `tables`: `first(seq)` in a full forward (positions 0 .. seq-1), or
`at(positions, columns)` in a generation step (per-row positions counted from each row's first real token, and the
cache columns of the new tokens). It then applies `rotate(x, tables)` to queries and keys and adds
`score_bias(tables, keys)` (None: nothing) to the scores of the queries over `keys` key columns 0 .. keys-1.
RotaryEmbedding (rotary.py) is the other encoding.
"""
import math

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from mindformers.models.modules.index_constants import int_range
from mindformers.parallel.tensor_parallel import local_size


class AttentionPosition(nn.Cell):
    """No position signal inside attention (the base every encoding overrides where it acts)."""

    def first(self, seq_length):  # pylint: disable=unused-argument
        return None

    def at(self, positions, columns=None):  # pylint: disable=unused-argument
        return None

    def rotate(self, x, tables):  # pylint: disable=unused-argument
        return x

    def score_bias(self, tables, keys):  # pylint: disable=unused-argument
        return None

    def linear_bias_slopes(self):
        """(1, heads, 1, 1) float32 slopes of a bias -slope * (query column - key column) on the scores, or None:
        what blockwise attention needs to bias each block itself."""
        return None


def alibi_slopes(num_heads):
    """ALiBi's per-head slopes (Press et al., 2022), float64: for n heads a power of two, 2^(-8i/n) for i = 1..n;
    otherwise those of the largest power of two p below n, then the odd-numbered slopes of 2p heads for the
    remaining n - p heads (what Bloom and Baichuan2-13B use for their 112 and 40 heads)."""
    def geometric(count):
        ratio = 2.0 ** (-8.0 / count)
        return [ratio ** (i + 1) for i in range(count)]

    power = 2 ** int(math.floor(math.log2(num_heads)))
    slopes = geometric(power)
    if power < num_heads:
        slopes += geometric(2 * power)[0::2][:num_heads - power]
    return np.array(slopes, np.float64)


class AlibiPosition(AttentionPosition):
    """Attention with linear biases: a query's score for a key `d` tokens back is lowered by slope_h * d.

    The bias depends on the distance between columns only, so left padding (whose keys are blocked) changes
    nothing and a generation step needs just its query columns. Under model parallelism each rank computes a block
    of consecutive heads (Attention's split) and takes those heads' slopes."""

    def __init__(self, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.negative_slopes = self.slopes_of_heads(0, num_heads)

    def slopes_of_heads(self, first, heads):
        slopes = alibi_slopes(self.num_heads)[first:first + heads]
        return Tensor(-slopes.reshape(1, heads, 1, 1), ms.float32)

    def parallelize(self, groups):
        heads = local_size(self.num_heads, groups)
        self.negative_slopes = self.slopes_of_heads(groups.model_rank * heads, heads)

    def first(self, seq_length):
        return int_range(0, seq_length, (seq_length,))  # query columns

    def at(self, positions, columns=None):
        return columns

    def score_bias(self, tables, keys):
        """(1, heads, queries, keys) float32 biases of query columns `tables` over key columns 0 .. keys-1."""
        return linear_bias(self.negative_slopes, ops.reshape(tables, (-1, 1)),
                           int_range(0, keys, (1, keys)))

    def linear_bias_slopes(self):
        return self.negative_slopes


def linear_bias(negative_slopes, query_columns, key_columns):
    """ALiBi's biases negative_slopes (..., 1, 1) * distance of query_columns (q, 1) to key_columns (1, k) int32,
    as negative_slopes' leading dims + (q, k) float32."""
    distance = ops.cast(ops.maximum(query_columns - key_columns, 0), ms.float32)  # later keys are blocked anyway
    return negative_slopes * ops.reshape(distance, (1,) * (negative_slopes.ndim - 2) + distance.shape)
