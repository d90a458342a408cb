"""(in, out) copies of a model's Linear weights, used while generate() runs on CPU.

Checkpoints hold a Linear weight as (out, in) and multiply by its transpose. With only a few rows to multiply (every
decode step), MindSpore's CPU MatMul streams a weight laid out (in, out) close to memory bandwidth and one laid out
(out, in) at about half of it (the 8-layer benchmark model decodes ~1.4x faster). So generation keeps a transposed
copy of each Linear's matmul_weight() (the weight; NormHead's with its rows normalised) and of a tied head's embedding
table, attached to the Linear (Linear.weight_t) or the causal LM (its weight_t) only for the length of a generate()
call: training and every graph compiled outside generation keep using the weight itself.

The copies are built on first use and kept; they are refreshed before the next generate() once the model has been
put in training mode (every training wrapper does that) or has loaded weights through load_weights. They cost the
linear weights' memory once more: GenerationConfig.transposed_weights=False decodes without them.
"""
import contextlib

import numpy as np
import mindspore as ms
from mindspore import Tensor, ops

from mindformers.models.modules.linear import Linear
from mindformers.models.modules.shape_only import parameter_sharing

_ATTRIBUTE = "_transposed_weights"
_BAND_ROWS = 1024


def contiguous_transpose(values):
    """values.T (2-d numpy) laid out contiguously, a band of rows at a time: numpy's own copy of the transposed view
    strides through the whole source for every output row, ~4x slower for a (49152, 576) embedding table (0.26 s
    against 0.07 s); for the layers' smaller weights the two take the same time."""
    out = np.empty(values.shape[::-1], values.dtype)
    for first in range(0, values.shape[0], _BAND_ROWS):
        out[:, first:first + _BAND_ROWS] = values[first:first + _BAND_ROWS].T
    return out


def _transposed(cell):
    """The (in, out) copy, laid out contiguously: in numpy, as PyNative's transpose is a strided view that a
    Parameter then copies element by element (SmolLM2-135M's copies: ~1.6-2.2 s that way, ~0.6-0.8 s in numpy)."""
    weight = cell.transposable_weight()
    if weight.dtype == ms.bfloat16:  # numpy has no bfloat16
        return ops.transpose(weight, (1, 0))
    return Tensor.from_numpy(contiguous_transpose(weight.asnumpy()))


def _source_name(cell):
    """The name of the Parameter a copy is made from (a NormHead's matmul_weight() is computed from its weight)."""
    return (cell.weight if isinstance(cell, Linear) else cell.transposable_weight()).name


class TransposedWeights:
    def __init__(self, model):
        # Cells that multiply by an (out, in) matrix and take an attached copy as `weight_t`: every Linear, and a
        # causal LM whose head is its embedding table (transposable_weight None: nothing to copy).
        self.cells = [cell for _, cell in model.cells_and_names()
                      if hasattr(cell, "transposable_weight") and cell.transposable_weight() is not None]
        self.copies = [parameter_sharing(_transposed(cell), f"{_source_name(cell)}.transposed", requires_grad=False)
                       for cell in self.cells]
        self.fresh = True

    def refresh(self):
        """Copy the weights again, into the same Parameters (compiled decoding steps hold those)."""
        for cell, copy in zip(self.cells, self.copies):
            copy.set_data(_transposed(cell))
        self.fresh = True

    @contextlib.contextmanager
    def attached(self):
        if not self.fresh:
            self.refresh()
        # object.__setattr__: Cell.__setattr__ would register the copy as a parameter of the Linear.
        for cell, copy in zip(self.cells, self.copies):
            object.__setattr__(cell, "weight_t", copy)
        try:
            yield
        finally:
            for cell in self.cells:
                object.__setattr__(cell, "weight_t", None)


def wanted(enabled):
    """Only the CPU MatMul gains from the layout; elsewhere the copies would only cost memory."""
    return enabled and ms.get_context("device_target") == "CPU"


def transposed_weights(model, enabled):
    """A context in which the model's Linear layers multiply through their transposed copies (when `enabled` and
    on CPU; otherwise a context that changes nothing)."""
    if not wanted(enabled):
        return contextlib.nullcontext()
    copies = model.__dict__.get(_ATTRIBUTE)
    if copies is None:
        copies = TransposedWeights(model)
        object.__setattr__(model, _ATTRIBUTE, copies)  # past Cell.__setattr__, like the decoding steps
    return copies.attached()


def mark_stale(model):
    """The model's weights may change from here on (training mode, a load): copy them again before using the copies."""
    copies = model.__dict__.get(_ATTRIBUTE)
    if copies is not None:
        copies.fresh = False


def weights_may_change(cell):
    """mark_stale for every model inside `cell`."""
    for _, sub in cell.cells_and_names():
        mark_stale(sub)
