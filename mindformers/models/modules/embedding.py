"""Token embedding table, split over model parallel along the vocabulary (unless vocab_emb_dp)."""
import mindspore as ms
from mindspore import Parameter, nn, ops

from mindformers.models.modules.linear import normal_init


class Embedding(nn.Cell):
    def __init__(self, vocab_size, hidden_size, init_std=0.02, param_init_type=ms.float32, vocab_parallel=True):
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding_weight = Parameter(normal_init((vocab_size, hidden_size), init_std, param_init_type),
                                          name="embedding_weight")
        self.param_layout = {"embedding_weight": 0 if vocab_parallel else None}

    def construct(self, input_ids):
        return ops.gather(self.embedding_weight, input_ids, 0)
