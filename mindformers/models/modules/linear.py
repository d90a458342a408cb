"""Dense layers whose weights declare how they split over model parallel ranks."""
import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, initializer

from mindformers.models.modules.shape_only import building_shapes_only

# Megatron naming: a column-parallel layer splits its outputs (weight dim 0), a row-parallel one its inputs (dim 1).
SPLIT_DIM = {"column": 0, "row": 1, None: None}


def normal_init(shape, std, dtype):
    """Initial values drawn from numpy's global RNG, which build_context seeds, so init is reproducible."""
    if building_shapes_only():  # dry run: a lazy initializer, never allocated under no_init_parameters
        return initializer(Normal(std), shape, dtype)
    return Tensor(np.random.normal(0.0, std, size=shape).astype(np.float32), dtype=dtype)


class Linear(nn.Cell):
    """y = x W^T (+ b) with W of shape (out_features, in_features), computed in `compute_dtype`."""

    def __init__(self, in_features, out_features, has_bias=False, parallel="column", init_std=0.02,
                 compute_dtype=ms.float32, param_init_type=ms.float32):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(normal_init((out_features, in_features), init_std, param_init_type), name="weight")
        self.has_bias = has_bias
        if has_bias:
            self.bias = Parameter(Tensor(np.zeros(out_features, np.float32), dtype=param_init_type), name="bias")
        self.param_layout = {"weight": SPLIT_DIM[parallel], "bias": 0 if parallel == "column" else None}
        self.compute_dtype = compute_dtype
        self.matmul = ops.MatMul(transpose_b=True)

    def construct(self, x):
        shape = x.shape
        x = ops.reshape(ops.cast(x, self.compute_dtype), (-1, shape[-1]))
        y = self.matmul(x, ops.cast(self.weight, self.compute_dtype))
        if self.has_bias:
            y = y + ops.cast(self.bias, self.compute_dtype)
        return ops.reshape(y, shape[:-1] + (self.out_features,))

