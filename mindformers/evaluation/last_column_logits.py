"""A cell that runs a causal LM (`model` the decoder stack, `logits` the head) on a left-padded batch and returns
only the last column's logits: at a vocabulary of 32000-256000 the full (batch, seq, vocab) logits would dwarf the
rest of the pass."""
import mindspore as ms
from mindspore import nn, ops


class LastColumnLogits(nn.Cell):
    """(input_ids (b, s), attention_mask (b, s), 0 on padding) -> float32 logits (b, vocab) of the next token."""

    def __init__(self, model):
        super().__init__(auto_prefix=False)  # keep the model's parameter names as they are
        self.lm = model

    def construct(self, input_ids, attention_mask):
        hidden = self.lm.model(input_ids, attention_mask)
        last = hidden[:, -1:, :]
        logits = self.lm.logits(last)
        return ops.reshape(ops.cast(logits, ms.float32), (input_ids.shape[0], -1))
