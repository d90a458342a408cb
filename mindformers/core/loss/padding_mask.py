"""Which tokens of right-padded rows are real: the loss and the perplexity count targets only after real inputs."""
import mindspore as ms
from mindspore import nn, ops


class RealTokenMask(nn.Cell):
    """(batch, length) True where a token comes before the run of pad_token_id that ends its row.

    Padding is only that trailing run: a pad id followed by a real token is itself real. This matters because many
    HF configs set pad_token_id equal to eos_token_id, and packed pretraining rows carry an eos after every document;
    comparing ids alone would drop the target after each of them.
    """

    def __init__(self, pad_token_id):
        super().__init__()
        self.pad_token_id = pad_token_id
        self.cumsum = ops.CumSum()
        self.row_max = ops.ReduceMax(keep_dims=True)

    def construct(self, input_ids):
        positions = self.cumsum(ops.ones_like(input_ids, dtype=ms.float32), 1)  # 1..length in each row
        real = ops.ne(input_ids, self.pad_token_id)
        last_real = self.row_max(ops.select(real, positions, ops.zeros_like(positions)), 1)
        return ops.le(positions, last_real)
