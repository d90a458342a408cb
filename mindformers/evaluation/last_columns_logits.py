"""A cell that runs a causal LM (`model` the decoder stack, `logits` the head) on a left-padded batch and returns
only the logits of its last few columns: at a vocabulary of 32000-256000 the full (batch, seq, vocab) logits would
dwarf the rest of the pass, and a choice's log-likelihood needs only the columns that predict its tokens."""
import mindspore as ms
from mindspore import nn, ops


class LastColumnsLogits(nn.Cell):
    """(input_ids (b, s), attention_mask (b, s), 0 on padding) -> float32 logits (b, columns, vocab) of the tokens
    after the last `columns` positions."""

    def __init__(self, model, columns):
        super().__init__(auto_prefix=False)  # keep the model's parameter names as they are
        self.lm = model
        self.columns = columns

    def construct(self, input_ids, attention_mask):
        hidden = self.lm.model(input_ids, attention_mask)
        last = hidden[:, -self.columns:, :]
        logits = self.lm.logits(last)
        return ops.reshape(ops.cast(logits, ms.float32), (input_ids.shape[0], self.columns, -1))
