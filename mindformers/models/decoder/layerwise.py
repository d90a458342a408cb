"""Layerwise compilation (`context.layerwise_compile`): PyNative runs (training, and predict / eval / serve) in which
every decoder layer runs through one compiled graph per layer structure, so compilation does not grow with the layer
count.

Graph mode compiles the whole train step as one graph, and its compile time grows ~1.5 CPU-s per layer (the CPU
backend cannot run lazy_inline's shared layer graph, and MindSpore cannot differentiate a non-unrolled loop over the
layers). Here the rest of the step runs op by op (PyNative) and each layer's forward is one graph traced once
(`ms.jit(capture_mode="trace")`) and reused by every layer of the same structure (structure_key): the trace takes the
layer's input and its weights as plain tensor arguments. PyNative's autograd differentiates the graph as one op and
hands the gradients of those arguments back to each layer's Parameters.

The trace takes copies of the weights (`w + 0`): a jit given Parameters binds them by identity (it is keyed by
parameter ids, recompiles per layer, and would run every layer with the first layer's weights); a copy is a plain
tensor, so the graph reads it as an input. Later calls run the compiled graph on the Parameters themselves.

Generation: a layer's generation cache (kv_cache.layer_cache: positions, blocked, slots, columns, key and value
tables) goes in as graph inputs, so prefill and decode each trace one graph per structure and shape. The graph
writes the layer's tables in place (ScatterUpdate on the table Parameters given as inputs, checked to reach each
layer's own tables on CPU); the trace itself writes copies, so the compiled graph then runs on the real tables. The
attention reads the written table back through a depend on the input (kv_cache.write): the tensor ScatterUpdate
returns would be traced as a constant. The transposed weight copies generate() attaches to the Linears (weight_t) are
inputs too. The attention mask's and the cache's presence, and the copies', are part of the graph's key (never None
as a traced input).
"""
# MindSpore's jit internals and Cell._params are used on purpose (see LayerGraph); mindspore is pinned to 2.10.0.
# pylint: disable=protected-access
import contextlib
import logging
import re
import sys
import time
import types

import mindspore as ms
from mindspore.graph import jit_trace
from mindspore.graph.api import _convert_python_data, _no_grad, _pynative_executor

from mindformers.models.decoder.layer import DecoderLayer, structure_key
from mindformers.tools.errors import ConfigError

logger = logging.getLogger("mindformers")

KEY = "context.layerwise_compile"
CACHE_TENSORS = 6  # a layer's generation cache: positions, blocked, slots, columns, key table, value table


def layerwise_enabled(config):
    """Whether the run (training, or predict / eval / serve) asks for layerwise compilation, after checking it can
    have it: one PyNative process without pipeline stages or a model split across processes (the stages'
    send/receive and the CPU collectives run inside graph-mode cells)."""
    context = config.get("context") or {}
    if not context.get("layerwise_compile"):
        return False
    if context.get("mode", 0) not in (1, "PYNATIVE_MODE", "pynative"):
        raise ConfigError(f"{config.where()}: {KEY}: applies to PyNative runs only; expected context.mode 1 "
                          f"(PYNATIVE_MODE), got {context.get('mode', 0)!r}")
    if config.get("use_parallel"):
        raise ConfigError(f"{config.where()}: {KEY}: applies to single-process runs only; expected use_parallel "
                          "False (pipeline stages and parallel runs compile whole graphs)")
    return True


_MINDSPORE_INTERNALS = re.compile(r"mindspore/common/.*\.py|mindspore/ops/.*\.py|mindspore/nn/.*\.py")


def _caller_lines():
    """What jit_trace._get_caller_lines gives (the calling files and lines, for the graph's debug info), read from
    the frames: it calls inspect.stack(), which reads the source of every frame for every traced op and fails on a
    frame without source (any `python -m` run: runpy is frozen). Frames of code without a file are left out."""
    files, lines = [], []
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if not name.startswith("<") and not _MINDSPORE_INTERNALS.search(name):  # "<string>": no file to point at
            files.append(name)
            lines.append(frame.f_lineno)
        frame = frame.f_back
    return files, lines


def _short_repr(tensor):
    return f"Tensor(shape={tuple(tensor.shape)}, dtype={tensor.dtype})"


@contextlib.contextmanager
def tracing_without_debug_costs():
    """While jit traces (and without the compile cache, see below): its logger.debug(f"...{args}") calls (per traced
    op and per argument) are formatted even with debug logging off in MindSpore 2.10, and a tensor's str/repr copies
    it to numpy and prints it (~3 s of the first step of the 8-layer benchmark model), so tensors print as their shape
    meanwhile; and jit looks _get_caller_lines up in its module at every call, so ours stands in."""
    classes = (ms.Tensor, ms.Parameter)
    saved = [(cls, name, vars(cls)[name]) for cls in classes for name in ("__repr__", "__str__") if name in vars(cls)]
    original_lines = jit_trace._get_caller_lines
    for cls, name, _ in saved:
        setattr(cls, name, _short_repr)
    jit_trace._get_caller_lines = _caller_lines
    # MindSpore 2.10's compile cache fails on a traced graph ("AbstractSpecialize error" in end_graph): the layer
    # graphs are traced with it off (the optimizer's jit graph still uses it).
    cached = ms.get_context("enable_compile_cache")
    if cached:
        ms.set_context(enable_compile_cache=False)
    try:
        yield
    finally:
        if cached:
            ms.set_context(enable_compile_cache=True)
        jit_trace._get_caller_lines = original_lines
        for cls, name, method in saved:
            setattr(cls, name, method)


def _attached(cell):
    return getattr(cell, "weight_t", None)


class LayerGraph:
    """The traced graph of one layer structure: called with any layer of that structure, it runs the structure's
    first layer (the template) with the caller's weights swapped in while tracing, then the compiled graph."""

    def __init__(self, template, optional_present):
        self.template = template
        # (sub-cell name, parameter key) of every weight, in a fixed order; the same for every layer of the structure.
        self.slots = [(name, key) for name, cell in template.cells_and_names() for key in cell._params]
        # Generation's transposed weight copies (mindformers/generation/transposed_weights.py), attached to the
        # Linears as weight_t while generate() runs: inputs too, or the graph would keep the template's as constants.
        self.attached = [name for name, cell in template.cells_and_names() if _attached(cell) is not None]
        # Cell.__call__ checks a cell's parameters on its first call; done now, before the parameters are swapped.
        for _, cell in template.cells_and_names():
            cell._init_check()
            cell._self_check()
        self.optional_present = optional_present
        self.traces = 0
        self.trace_seconds = 0.0  # tracing, compiling and the first run of each traced graph
        self._phases = {}
        # A jit function per input key (see _trace_and_run), kept alive: its phase name holds the function's id, which
        # a later function could otherwise reuse and so run this one's graph.
        self._traced = {}

    def weights_of(self, cells):
        """The weights (and attached copies) of the layer whose sub-cells by name are `cells`."""
        return [cells[name]._params[key] for name, key in self.slots] + [cells[name].weight_t for name in self.attached]

    def _forward(self, x, *tensors):
        """What is traced: the template's construct with the weights in `tensors` (after the mask and the cache's
        tensors, when present)."""
        self.traces += 1
        has_mask, has_cache = self.optional_present[:2]
        given = has_mask + CACHE_TENSORS * has_cache
        attention_mask = tensors[0] if has_mask else None
        cache = tuple(tensors[has_mask:given]) if has_cache else None
        weights = tensors[given:]
        cells = dict(self.template.cells_and_names())
        owners = [cells[name]._params for name, _ in self.slots]
        saved = [params[key] for params, (_, key) in zip(owners, self.slots)]
        for params, (_, key), weight in zip(owners, self.slots, weights):
            params[key] = weight
        linears = [cells[name] for name in self.attached]
        saved_attached = [cell.weight_t for cell in linears]
        for cell, weight in zip(linears, weights[len(self.slots):]):
            object.__setattr__(cell, "weight_t", weight)  # as transposed_weights attaches them
        try:
            return type(self.template).construct(self.template, x, attention_mask, cache)
        finally:
            for params, (_, key), weight in zip(owners, self.slots, saved):
                params[key] = weight
            for cell, weight in zip(linears, saved_attached):
                object.__setattr__(cell, "weight_t", weight)

    def __call__(self, cells, x, attention_mask=None, cache=None):
        """Run the layer whose sub-cells by name are `cells`."""
        inputs = (x,) + tuple(t for t in (attention_mask,) if t is not None) + tuple(cache or ())
        weights = self.weights_of(cells)
        grad = _pynative_executor.requires_grad()  # MindSpore's own instance: making one per call sets paths
        key = (grad,) + tuple((tuple(t.shape), t.dtype) for t in inputs)
        phase = self._phases.get(key)
        if phase is None:
            # Traced with copies (see the module's docstring), so the graph takes the weights as inputs; and a
            # cache's key and value tables (Parameters) too, so the compiled graph then runs on the real ones.
            copies = tuple(t + 0 if isinstance(t, ms.Parameter) else t for t in inputs)
            output = self._trace_and_run(copies + tuple(w + 0 for w in weights), key)
            if cache is None:
                return output
            phase = self._phases.get(key)
            if phase is None:  # the trace wrote copies of the tables: going on would decode from unwritten ones
                raise RuntimeError("layerwise compilation: the traced layer graph's phase was not found")
        # The compiled graph, run as jit's own "compiled before" path runs it, with two differences. The weights
        # go in as the Parameters themselves: the graph was traced with plain tensors in their place, so it reads
        # them as inputs, and PyNative's autograd hands their gradients straight to the Parameters (no per-step
        # copies). And without that path's per-call logger.debug(f"...{args}"), whose f-strings MindSpore 2.10
        # formats even with debug logging off (every argument's repr copies the tensor to numpy: ~0.45 s per
        # step of the 8-layer benchmark model). Internal API: mindspore is pinned to 2.10.0 in setup.py;
        # tests/models/test_layer_reuse.py checks the losses against PyNative's and graph mode's.
        return _convert_python_data(jit_trace.tr.get_instance().run_graph(
            phase, jit_trace._DEFAULT_JIT_CONFIG, inputs + tuple(weights)))

    def _trace_and_run(self, args, key):
        """The first call for these shapes (and grad or not): jit traces, compiles and runs; its phase is kept."""
        start = time.perf_counter()
        before = set(jit_trace._trace_compile_cache)
        # A function of its own per input key: jit's phase name is the function's name and id plus an arguments key
        # that MindSpore 2.10 gives as 0 for the same function with other shapes (a decode step after the prefill
        # would run the prefill's graph).
        def traced(x, *tensors):  # a plain function: jit names a traced method by its object's Cell create_time
            # The trace runs the layer op by op to record it. Without no_grad PyNative's autograd also recorded
            # those ops and kept their inputs for a backward that never runs (the graph, traced for gradients as
            # jit decided before this body, is differentiated as one op): 20k of the trace's 44k page faults at
            # seq 1024 (8-layer benchmark model, batch 2).
            with _no_grad():
                return self._forward(x, *tensors)

        self._traced[key] = ms.jit(traced, capture_mode="trace")
        with tracing_without_debug_costs():
            output = self._traced[key](*args)
        added = set(jit_trace._trace_compile_cache) - before
        if len(added) == 1:
            self._phases[key] = added.pop()
        self.trace_seconds += time.perf_counter() - start
        logger.info("layerwise compilation: traced, compiled and ran a %s graph of %s for input %s in %.1f s",
                    "training" if key[0] else "forward", type(self.template).__name__, tuple(args[0].shape),
                    time.perf_counter() - start)
        return output


class LayerwiseGraphs:
    """The layer graphs of one model, by (structure, training or not, which optional inputs are given)."""

    def __init__(self):
        self.graphs = {}
        self.structures = {}
        # Per layer, read once at install (the network is final then): its sub-cells by name, and those that may
        # carry an attached weight copy. Walking the cells on every call cost ~0.1 ms a layer call in a decode step.
        self.sub_cells = {}
        self.attachable = {}

    @property
    def traces(self):
        """How many layer graphs were traced (one per structure and input pattern when the sharing works)."""
        return sum(graph.traces for graph in self.graphs.values())

    @property
    def trace_seconds(self):
        return sum(graph.trace_seconds for graph in self.graphs.values())

    def run(self, layer, x, attention_mask=None, cache=None):
        present = (attention_mask is not None, cache is not None,
                   any(cell.weight_t is not None for cell in self.attachable[id(layer)]))
        key = (self.structures[id(layer)], layer.training, present)
        graph = self.graphs.get(key)
        if graph is None:
            graph = self.graphs[key] = LayerGraph(layer, present)
        return graph(self.sub_cells[id(layer)], x, attention_mask, cache)

    def install(self, network):
        """Route every DecoderLayer of `network` through its structure's graph. Call it once the network is final
        (after PET, freezing, checkpoint loading): the structure is read now."""
        layers = [cell for _, cell in network.cells_and_names() if isinstance(cell, DecoderLayer)]
        for layer in layers:
            self.structures[id(layer)] = structure_key(layer)
            self.sub_cells[id(layer)] = dict(layer.cells_and_names())
            self.attachable[id(layer)] = [cell for cell in self.sub_cells[id(layer)].values()
                                          if hasattr(cell, "weight_t")]
            layer.construct = lambda x, attention_mask=None, cache=None, layer=layer: self.run(
                layer, x, attention_mask, cache)
        logger.info("layerwise compilation: %d decoder layers, %d distinct structures", len(layers),
                    len(set(self.structures.values())))
        return self


def compile_layerwise(network, train_cell=None):
    """Switch `network` (and its train step's optimizer, see run_op_by_op) to layerwise compilation; returns the
    LayerwiseGraphs."""
    if ms.get_context("mode") != ms.PYNATIVE_MODE:
        raise ConfigError(f"{KEY}: applies to PyNative runs only (context.mode 1)")
    graphs = LayerwiseGraphs().install(network)
    object.__setattr__(network, "_layerwise_graphs", graphs)  # past Cell.__setattr__; generation's timing reads it
    if train_cell is not None:
        train_cell.layerwise_graphs = graphs  # the trainer's log reads the first step's trace seconds
        run_op_by_op(train_cell.optimizer)
    return graphs


def run_op_by_op(cell, methods=("construct", "update_per_parameter")):
    """Run `cell`'s jit-decorated `methods` (MindSpore's optimizers' construct, or our AdamWeightDecay's
    update_per_parameter, which is that construct) op by op instead: compiling the optimizer's graph is ~0.4-0.7
    CPU-s of the first training step (parsing its source included), and on CPU its fused update per parameter runs
    as fast op by op (measured on the 8-layer benchmark model's steps)."""
    for name in methods:
        method = getattr(type(cell), name, None)
        if not getattr(method, "__wrapped_by_jit__", False):
            continue
        while hasattr(method, "__wrapped__"):
            method = method.__wrapped__
        setattr(cell, name, types.MethodType(method, cell))
