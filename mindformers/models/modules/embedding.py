"""Token embedding table, split over model parallel along the vocabulary (unless vocab_emb_dp)."""
import mindspore as ms
from mindspore import nn, ops

from mindformers.models.modules.linear import normal_parameter
from mindformers.parallel.tensor_parallel import ReduceFromModelParallel, keep_local_shards, local_size


class Embedding(nn.Cell):
    def __init__(self, vocab_size, hidden_size, init_std=0.02, param_init_type=ms.float32, vocab_parallel=True):
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding_weight = normal_parameter((vocab_size, hidden_size), init_std, param_init_type,
                                                "embedding_weight")
        self.param_layout = {"embedding_weight": 0 if vocab_parallel else None}
        self.vocab_parallel = vocab_parallel
        self.vocab_split = False

    def parallelize(self, groups):
        """Stand-alone model parallelism (CPU): this rank holds rows [vocab_start, vocab_start + local_vocab); ids
        outside that range look up zeros, and summing over the group gives every id its row."""
        self.vocab_split = self.vocab_parallel and groups.model_sharded
        if self.vocab_split:
            self.local_vocab = local_size(self.vocab_size, groups)
            self.vocab_start = groups.model_rank * self.local_vocab
            self.reduce_output = ReduceFromModelParallel(groups)
            keep_local_shards(self, groups)

    def construct(self, input_ids):
        if not self.vocab_split:
            return ops.gather(self.embedding_weight, input_ids, 0)
        local_ids = input_ids - self.vocab_start
        inside = ops.logical_and(local_ids >= 0, local_ids < self.local_vocab)
        local_ids = ops.select(inside, local_ids, ops.zeros_like(local_ids))
        rows = ops.gather(self.embedding_weight, local_ids, 0)
        return self.reduce_output(rows * ops.expand_dims(ops.cast(inside, rows.dtype), -1))
