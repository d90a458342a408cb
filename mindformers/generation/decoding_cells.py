"""The compiled step of generation for a causal LM: new tokens through the model's own forward, with a key/value
cache whose shape the model gives (`cache_spec`).

One cell serves prefill (the whole prompt grid at column 0), decode (one token per row) and the no-cache path
(the whole grid again each step); graph mode compiles one graph per input shape. It wraps the model with
auto_prefix=False so its parameter names (and so checkpoint loading) stay as they are, and only the selected
column goes through the LM head: at vocab 32000 the head is the largest matmul of a prefill.
"""
import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from mindformers.models.modules.kv_cache import KVCache, step_inputs, step_inputs_in_graph


class DecodingStep(nn.Cell):
    """(input_ids (b, s), *where, select (1,)) -> logits (b, vocab) float32 of input column `select`; `where` places
    the tokens in the cache (`inputs` makes them all): in graph mode start (1,) and first_columns (b,), from which the
    graph derives kv_cache.step_inputs, in PyNative those four tensors themselves. Their keys and values are written
    into `cache`."""

    def __init__(self, model, batch, length):
        super().__init__(auto_prefix=False)
        # Held past Cell.__setattr__, so the model is not a sub-cell of the step: a graph-mode Cell call walks every
        # sub-cell in Python to set its compile phase (~1.5 ms a call on the benchmark model, near a tenth of a
        # batch-1 decode step), and the step's graph needs nothing from that walk. The graph still reads the
        # model's parameters.
        object.__setattr__(self, "lm", model)
        spec = model.cache_spec()
        self.cache = KVCache(spec.num_layers, batch, spec.kv_heads, length, spec.head_dim, spec.dtype)
        self.max_position = spec.max_position
        self.window = spec.sliding_window

    def inputs(self, input_ids, start, first_columns, select):
        """The step's input tensors for tokens `input_ids` (b, s) (numpy) at cache columns start .. start+s-1 of
        rows whose real tokens begin at first_columns[row] (left padding before it is never attended to), and the
        logits of input column `select`."""
        if ms.get_context("mode") == ms.GRAPH_MODE:
            where = (np.array([start], np.int32), np.array(first_columns, np.int32))
        else:
            where = step_inputs(start, first_columns, input_ids.shape[1], self.cache, self.max_position, self.window)
        # from_numpy shares the arrays (fresh ones: the ids are copied, the caller's grid changes between steps)
        arrays = (np.array(input_ids, np.int32),) + where + (np.array([select], np.int32),)
        return tuple(Tensor.from_numpy(array) for array in arrays)

    def parameters_dict(self, recurse=True):
        """The cache's parameters and the model's: graph mode binds a compiled graph's parameters by these names,
        and a graph loaded from the compile cache reads the model's weights only through them."""
        params = self.lm.parameters_dict(recurse)
        copies = self.lm.__dict__.get("_transposed_weights")  # transposed_weights.py's copies, when in use
        params.update({copy.name: copy for copy in (copies.copies if copies is not None else ())})
        params.update(super().parameters_dict(recurse))
        return params

    def construct(self, input_ids, *where_and_select):
        where, select = where_and_select[:-1], where_and_select[-1]
        if len(where) == 2:
            where = step_inputs_in_graph(*where, input_ids.shape[1], self.cache, self.max_position, self.window)
        hidden = self.lm.model(input_ids, None, self.cache.layer_caches(*where))
        logits = self.lm.logits(ops.gather(hidden, select, 1))
        return ops.reshape(ops.cast(logits, ms.float32), (input_ids.shape[0], -1))
