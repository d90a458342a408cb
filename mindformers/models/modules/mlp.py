"""SwiGLU feed-forward: w2(silu(w1 x) * w3 x)."""
import mindspore as ms
from mindspore import nn, ops

from mindformers.models.modules.linear import Linear


class SwiGLUFeedForward(nn.Cell):
    def __init__(self, hidden_size, intermediate_size, compute_dtype=ms.float32, param_init_type=ms.float32,
                 init_std=0.02):
        super().__init__()
        linear = dict(compute_dtype=compute_dtype, param_init_type=param_init_type, init_std=init_std)
        self.w1 = Linear(hidden_size, intermediate_size, parallel="column", **linear)  # gate
        self.w3 = Linear(hidden_size, intermediate_size, parallel="column", **linear)  # up
        self.w2 = Linear(intermediate_size, hidden_size, parallel="row", **linear)  # down

    def construct(self, x):
        return self.w2(ops.silu(self.w1(x)) * self.w3(x))
