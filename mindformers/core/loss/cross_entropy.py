"""Token-level cross entropy that ignores masked positions."""
import mindspore as ms
from mindspore import nn, ops

from mindformers.core.loss.head_loss import HeadWeightedNll
from mindformers.kernels import cpu_nll
from mindformers.parallel.tensor_parallel import GatherFromModelParallel, ReduceFromModelParallel
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister


class WeightedNll(nn.Cell):
    """sum_i weights_i * -log_softmax(logits_i)[labels_i], with a hand-written backward.

    Autodiff of a composed log-softmax/gather makes several passes over the (tokens, vocab) logits (and a
    scatter of zeros for the gather); the closed form (softmax - onehot(label)) * weight needs one softmax,
    one scatter of `tokens` elements and one multiply. On CPU this cuts the loss' share of a training step
    with a 32000 vocabulary by ~3x.
    """

    def construct(self, logits, labels, weights):
        log_probs = ops.log_softmax(logits, -1)
        picked = ops.squeeze(ops.gather_elements(log_probs, 1, ops.expand_dims(labels, -1)), -1)
        return -ops.sum(picked * weights)

    def bprop(self, logits, labels, weights, out, dout):
        return nll_gradient(ops.softmax(logits, -1), labels, 1.0, weights, dout)


def nll_gradient(probs, labels, hit, weights, dout):
    """The closed-form backward of both NLL cells: (probs - hit * onehot(label)) * weight * dout per row, where
    `hit` says whether the row's label lies among these columns (always, unless the vocabulary is split)."""
    index = ops.expand_dims(labels, -1)
    probs = ops.tensor_scatter_elements(probs, index, ops.gather_elements(probs, 1, index) - hit, axis=1)
    return probs * ops.expand_dims(weights * dout, -1), ops.zeros_like(labels), ops.zeros_like(weights)


class VocabParallelWeightedNll(nn.Cell):
    """WeightedNll over logits whose vocabulary is split across the model-parallel group (CPU tensor parallelism):
    each rank holds columns [rank * V/mp, (rank+1) * V/mp). The row maximum, the sum of exponentials and the label's
    logit are combined over the group, so every rank gets the full loss without gathering (tokens, vocab) logits;
    the backward is the same closed form on each rank's own columns.

    construct returns (loss, row maximum, sum of exponentials): the backward reads the two statistics from the
    forward's output instead of repeating its collectives (and a bprop may not call cells in graph mode)."""

    def __init__(self, groups):
        super().__init__()
        self.rank = groups.model_rank
        self.sum_over_group = ReduceFromModelParallel(groups)
        self.gather_over_group = GatherFromModelParallel(groups)
        self.row_max = ops.ReduceMax(keep_dims=True)

    def local_labels(self, labels, width):
        """Each row's label as a column of this shard (0 when outside) and whether it lies here (1.0 or 0.0)."""
        local = labels - self.rank * width
        inside = ops.logical_and(local >= 0, local < width)
        return local * ops.cast(inside, local.dtype), ops.cast(inside, ms.float32)

    def construct(self, logits, labels, weights):
        row_max = self.row_max(self.gather_over_group(self.row_max(logits, -1)), -1)
        shifted = logits - row_max
        sum_exp = self.sum_over_group(ops.sum(ops.exp(shifted), -1, keepdim=True))
        local, inside = self.local_labels(labels, logits.shape[-1])
        picked = ops.squeeze(ops.gather_elements(shifted, 1, ops.expand_dims(local, -1)), -1) * inside
        picked = self.sum_over_group(picked)
        return ops.sum((ops.log(ops.squeeze(sum_exp, -1)) - picked) * weights), row_max, sum_exp

    def bprop(self, logits, labels, weights, out, dout):
        _, row_max, sum_exp = out
        local, inside = self.local_labels(labels, logits.shape[-1])
        return nll_gradient(ops.exp(logits - row_max) / sum_exp, local, ops.expand_dims(inside, -1), weights,
                            dout[0])


@MindFormerRegister.register(MindFormerModuleType.LOSS)
class CrossEntropyLoss(nn.Cell):
    """Mean negative log-likelihood over the positions where `mask` is 1, computed in float32."""

    def __init__(self, vocab_parallel_groups=None):
        super().__init__()
        # vocab_parallel_groups: the logits hold this rank's share of the vocabulary, split over these groups' model
        # parallel ranks (CPU model parallelism).
        self.vocab_parallel = vocab_parallel_groups is not None
        if self.vocab_parallel:
            self.weighted_nll = VocabParallelWeightedNll(vocab_parallel_groups)
        else:  # the logits are cast to float32 first, so on CPU the kernel serves whatever the model's dtype
            self.weighted_nll = cpu_nll.CpuWeightedNll() if cpu_nll.available(ms.float32) else WeightedNll()
        if not self.vocab_parallel:
            self.head_nll = HeadWeightedNll()

    def construct(self, logits, labels, mask):
        logits = ops.cast(ops.reshape(logits, (-1, logits.shape[-1])), ms.float32)
        safe_labels, weights = self.flat_targets(labels, mask)
        nll = self.weighted_nll(logits, safe_labels, weights)
        if self.vocab_parallel:
            nll = nll[0]  # (loss, row max, sum of exponentials)
        return nll

    def of_hidden(self, hidden, head_weight, labels, mask):
        """The same loss of the logits hidden (..., h) head_weight (vocab, h)^T, without materialising them
        (head_loss.py); the product in hidden's dtype (which must be head_weight's)."""
        safe_labels, weights = self.flat_targets(labels, mask)
        return self.head_nll(ops.reshape(hidden, (-1, hidden.shape[-1])), head_weight, safe_labels, weights)[0]

    @staticmethod
    def flat_targets(labels, mask):
        """(tokens,) int32 labels and float32 weights mask / number of targets."""
        labels = ops.reshape(labels, (-1,))
        mask = ops.cast(ops.reshape(mask, (-1,)), ms.float32)
        # Masked labels may hold ignore ids (-100): point them at class 0, their weight is 0 anyway.
        safe_labels = ops.cast(labels * ops.cast(mask, labels.dtype), ms.int32)
        return safe_labels, mask / ops.maximum(ops.sum(mask), 1.0)
