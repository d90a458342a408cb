"""LoRA: y = x W^T + scaling * dropout(x) A^T B^T, with W frozen and only A (rank, in) and B (out, rank) trained.

B starts at zero, so a freshly wrapped model computes exactly what the base model does. The adapter is
added to an existing Linear in place (its class becomes LoRALinear): W keeps its object and its name, so
a base checkpoint loads unchanged and the adapters appear beside it as `<cell>.lora_a` / `<cell>.lora_b`.
"""
import re

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from mindformers.models.modules.linear import Linear
from mindformers.parallel.tensor_parallel import CopyToModelParallel
from mindformers.tools.errors import ConfigError

LORA_PARAMS = ("lora_a", "lora_b")


class LoRALinear(Linear):
    """A Linear with a low-rank update; made by `add_lora` from a built Linear, never constructed directly.

    With CPU model parallelism the adapter splits like its layer: a column-parallel layer's B keeps its share of
    the outputs and A stays whole (A's gradient, a partial sum from this rank's outputs, is summed over the group);
    a row-parallel layer's A keeps its share of the inputs, the low-rank partial products are summed over the group
    and B stays whole."""

    def parallelize(self, groups):
        super().parallelize(groups)  # the weight and the adapters split as param_layout declares
        if self.column_split:
            self.sum_lora_a_grads = CopyToModelParallel(groups)

    def lora_a_used(self):
        if self.column_split:
            return self.sum_lora_a_grads(self.lora_a)
        return self.lora_a

    def construct(self, x):
        shape = x.shape
        flat = ops.reshape(ops.cast(x, self.compute_dtype), (-1, shape[-1]))
        if self.copies_input:
            flat = self.copy_input(flat)
        y = self.project(flat)
        low = self.matmul(self.lora_dropout(flat), ops.cast(self.lora_a_used(), self.compute_dtype))
        if self.row_split:
            y = self.reduce_output(y)
            low = self.reduce_output(low)
        if self.has_bias:
            y = y + ops.cast(self.bias, self.compute_dtype)
        y = y + self.matmul(low, ops.cast(self.lora_b, self.compute_dtype)) * self.lora_scaling
        if self.gather_output:
            y = self.gather(y)
        return ops.reshape(y, shape[:-1] + (self.output_size,))


def add_lora(linear, rank, alpha, dropout):
    """Turn `linear` (a plain, whole layer) into a LoRALinear in place and return it. The adapters are drawn at the
    layer's whole size; `parallelize` then cuts them to this rank's share, so a model-parallel run starts from the
    single process' adapters."""
    dtype = linear.weight.dtype
    bound = 1.0 / np.sqrt(linear.in_features)  # the default Linear init range: A's outputs start at unit scale
    linear.__class__ = LoRALinear
    linear.lora_a = Parameter(Tensor(np.random.uniform(-bound, bound, (rank, linear.in_features)).astype(np.float32),
                                     dtype=dtype), name="lora_a")
    linear.lora_b = Parameter(Tensor(np.zeros((linear.out_features, rank), np.float32), dtype=dtype), name="lora_b")
    linear.lora_scaling = float(alpha) / rank
    linear.lora_rank = rank
    linear.lora_dropout = nn.Dropout(p=float(dropout)) if dropout else nn.Identity()
    # A column-parallel W splits its outputs: so does B; a row-parallel W splits its inputs: so does A.
    split = linear.param_layout.get("weight")
    linear.param_layout = dict(linear.param_layout, lora_a=1 if split == 1 else None,
                               lora_b=0 if split == 0 else None)
    return linear


def default_targets(network):
    """The model's own default (DecoderForCausalLM.default_lora_targets), else the q/v projections' usual names."""
    named = getattr(network, "default_lora_targets", None)
    return named() if callable(named) else ".*wq|.*wv"


def apply_lora(network, config):
    """Add adapters to every Linear whose cell name fully matches config.target_modules (unset: the targets the
    model names, its query and value projections); returns their names."""
    targets_regex = config.target_modules or default_targets(network)
    pattern = re.compile(targets_regex)
    targets = [(name, cell) for name, cell in network.cells_and_names()
               if isinstance(cell, Linear) and not isinstance(cell, LoRALinear) and pattern.fullmatch(name)]
    if not targets:
        linears = [name for name, cell in network.cells_and_names() if isinstance(cell, Linear)]
        raise ConfigError(f"model.model_config.pet_config.target_modules: {targets_regex!r} matches no "
                          f"linear layer (e.g. {', '.join(linears[:4])}{', ...' if len(linears) > 4 else ''})")
    for _, cell in targets:
        add_lora(cell, config.lora_rank, config.lora_alpha, config.lora_dropout)
    return [name for name, _ in targets]


def is_lora_parameter(name):
    return name.rsplit(".", 1)[-1] in LORA_PARAMS



__all__ = ["LoRALinear", "add_lora", "apply_lora", "is_lora_parameter"]
