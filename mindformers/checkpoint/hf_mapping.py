"""How a model family's weights and config correspond to HuggingFace's: the declaration types and the registry.

A family module (e.g. mindformers/models/llama/convert_mapping.py) declares one `HFFamily` (families on the shared
decoder through mindformers/models/decoder/hf_layout.py); conversion in both directions, from_pretrained and
save_pretrained all read that one declaration.
"""
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Tuple

import numpy as np

from mindformers.checkpoint.tensor_dtypes import NUMPY
from mindformers.checkpoint.tensor_store import TensorInfo
from mindformers.tools.errors import ConfigError


@dataclass(frozen=True)
class WeightMap:
    """One weight of ours and the HF tensor(s) it holds; several HF tensors are concatenated along dim 0 in
    ours (a fused qkv or gate/up layout). `{layer}` in a name repeats the entry for every decoder layer.
    Shapes are tuples of size names (see `HFFamily.sizes`), one per HF part, as HF stores them.

    transposed: HF stores the matrix as (in, out) (GPT-2's Conv1D); ours is its transpose.
    rows: for one HF part, sizes -> the rows of the (transposed) HF tensor that make up ours, in order (a range
    or an index array): a block of a fused HF tensor held apart in ours (Baichuan2's W_pack as wq/wk/wv), or
    HF's rows reordered (Bloom's per-head q/k/v). Several of ours may take rows of one HF tensor; together they
    must cover each of its rows once.
    stack (a size name): the one HF name holds `{expert}` and ours stacks that many HF tensors along a new
    leading dimension (the experts of a mixture-of-experts layer, HF's one tensor per expert): each is one
    leading row of ours, so ours is still the concatenation of its parts and conversion streams it the same way.
    """

    ours: str
    hf: Tuple[str, ...]
    shapes: Tuple[Tuple[str, ...], ...]
    when: Optional[str] = None  # a config condition (see HFFamily.conditions) the weight exists under
    transposed: bool = False
    rows: Optional[Callable] = None
    stack: Optional[str] = None


def weight(ours, hf, shape, when=None, transposed=False, rows=None):
    """Shorthand for a one-to-one WeightMap: weight("ours.{layer}.w", "hf.{layer}.w", ("hidden", "vocab"))."""
    return WeightMap(ours, (hf,), (tuple(shape),), when, transposed, rows)


def row_block(size, after=()):
    """A WeightMap `rows`: the sizes[size] rows that follow the rows of the sizes named in `after` (a block of a
    fused tensor, e.g. k's rows of q|k|v: row_block("kv", after=("q",)))."""
    def rows(sizes):
        start = sum(sizes[name] for name in after)
        return range(start, start + sizes[size])
    return rows


def stacked(ours, hf, shape, stack, when=None):
    """Ours (stack, *shape) holds HF's tensors `hf` with {expert} = 0 .. stack - 1, each of `shape`."""
    return WeightMap(ours, (hf,), (tuple(shape),), when, stack=stack)


@dataclass(frozen=True)
class Part:
    hf_name: str
    shape: Tuple[int, ...]  # as HF stores it
    transposed: bool = False
    rows: Any = field(default=None, compare=False)  # a range or index array, or None: every row
    stacked: bool = False  # one slice of ours along a new leading dimension (an expert of a stacked weight)

    @property
    def plain(self):
        """Ours holds this HF tensor's bytes as they are (whole, or as one block of a concatenation)."""
        return not self.transposed and self.rows is None

    @property
    def view_shape(self):
        """HF's shape as ours reads it (transposed)."""
        return tuple(reversed(self.shape)) if self.transposed else tuple(self.shape)

    @property
    def taken_shape(self):
        """HF's rows as ours reads them (transposed, selected)."""
        view = self.view_shape
        return view if self.rows is None else (len(self.rows),) + view[1:]

    @property
    def our_shape(self):
        """The rows this part contributes to ours."""
        return (1,) + self.taken_shape if self.stacked else self.taken_shape

    def take(self, array):
        """Our rows of the HF array."""
        if self.transposed:
            array = array.T
        if self.rows is not None:
            array = array[np.asarray(self.rows)]
        return np.ascontiguousarray(array).reshape(self.our_shape)


@dataclass(frozen=True)
class PlannedWeight:
    ours: str
    parts: Tuple[Part, ...]

    @property
    def our_shape(self):
        first = self.parts[0].our_shape
        return (sum(p.our_shape[0] for p in self.parts),) + tuple(first[1:])


@dataclass(frozen=True)
class HFFamily:
    name: str
    model_types: Tuple[str, ...]            # HF config.json model_type values this family reads
    hf_architecture: str                    # written to config.json "architectures"
    our_config_type: str                    # registered names for the YAML beside a converted checkpoint
    our_arch_type: str
    weights: Tuple[WeightMap, ...]
    sizes: Callable                         # our config -> {size name: int}
    config_from_hf: Callable                # (hf config dict, dtype name) -> our config kwargs
    config_to_hf: Callable                  # (our config, dtype name) -> hf config dict
    conditions: dict = field(default_factory=dict)  # condition name -> predicate on our config
    num_layers: Callable = lambda config: config.num_layers
    # HF tensor names as read -> the names `weights` uses (checkpoints published with and without a prefix).
    canonical_name: Callable = lambda name: name
    # HF tensors that are buffers computed from the config, not weights: name -> float32 array of our config.
    # Written with the weights; when reading they are skipped (as are names ending in `skipped_buffers`).
    buffers: Callable = lambda config: {}
    skipped_buffers: Tuple[str, ...] = ("rotary_emb.inv_freq",)

    def plan(self, config):
        """Every weight of a model with this config, layers expanded, shapes resolved, in a stable order."""
        sizes = self.sizes(config)
        entries = [e for e in self.weights if not e.when or self.conditions[e.when](config)]
        layered = [e for e in entries if "{layer}" in e.ours]
        first = entries.index(layered[0]) if layered else len(entries)
        # Layer by layer, as HF shards are laid out: a shard then holds whole layers.
        order = [(e, None) for e in entries[:first] if e not in layered]
        order += [(e, layer) for layer in range(self.num_layers(config)) for e in layered]
        order += [(e, None) for e in entries[first:] if e not in layered]
        rows = {id(e): e.rows(sizes) if e.rows else None for e in entries}  # one index per entry, for all layers

        def parts(entry, layer):
            names = list(zip(entry.hf, entry.shapes))
            if entry.stack:
                (hf, shape), = names
                names = [(hf.replace("{expert}", str(index)), shape) for index in range(sizes[entry.stack])]
            return tuple(Part(hf.format(layer=layer), tuple(sizes[s] for s in shape), entry.transposed,
                              rows[id(entry)], bool(entry.stack)) for hf, shape in names)
        return [PlannedWeight(e.ours.format(layer=layer), parts(e, layer)) for e, layer in order]

    def is_buffer(self, name, config):
        return name in self.buffers(config) or name.endswith(self.skipped_buffers)

    def read_names(self, tensors):
        """HF tensors (name -> TensorInfo) under the names `weights` uses."""
        return {self.canonical_name(name): info for name, info in tensors.items()}


def our_sources(planned, tensors):
    """TensorInfos whose chunks, one after another, are the bytes of our tensor `planned` (HF tensors in
    `tensors`): an HF tensor as it is, or (transposed, selected rows) an array made from it when read."""
    sources = []
    for part in planned.parts:
        info = tensors[part.hf_name]
        if part.plain:
            sources.append(info)
        else:
            sources.append(TensorInfo(planned.ours, info.dtype, part.our_shape,
                                      load=lambda p=part, i=info: p.take(i.read())))
    return sources


def hf_sources(plan, tensors):
    """(HF name, TensorInfo of its bytes) for every HF tensor of the plan, in plan order, from our tensors: a byte
    range of one of ours where ours holds it plainly, else an array assembled from the rows of ours it went to."""
    pieces = {}
    for planned in plan:
        start = 0
        for part in planned.parts:
            pieces.setdefault(part.hf_name, []).append((part, tensors[planned.ours], start))
            start += part.our_shape[0]
    for name, items in pieces.items():
        part, info, start = items[0]
        if len(items) == 1 and part.plain:
            yield name, _row_range(name, info, part, start)
        else:
            yield name, TensorInfo(name, info.dtype, part.shape, load=lambda items=items: _assemble(name, items))


def _row_range(name, info, part, start):
    """The HF tensor of `part` as a byte range of ours (`info`), from our row `start` (no copy)."""
    if tuple(part.shape) == tuple(info.shape):
        return TensorInfo(name, info.dtype, info.shape, info.segments, info.load)
    row_bytes = info.nbytes // info.shape[0]
    begin, nbytes = start * row_bytes, part.our_shape[0] * row_bytes
    return TensorInfo(name, info.dtype, part.shape,
                      load=lambda: info.read().reshape(-1).view("u1")[begin:begin + nbytes])


def _assemble(name, items):
    """The HF tensor whose rows went to several of ours (or to one, transposed or reordered)."""
    first = items[0][0]
    out = np.empty(first.view_shape, dtype=NUMPY[items[0][1].dtype])
    filled = np.zeros(first.view_shape[0], np.int64)
    for part, info, start in items:
        block = info.read()[start:start + part.our_shape[0]].reshape((-1,) + first.view_shape[1:])
        rows = np.arange(first.view_shape[0]) if part.rows is None else np.asarray(part.rows)
        out[rows] = block
        filled[rows] += 1
    if not (filled == 1).all():
        raise RuntimeError(f"HF tensor '{name}': the family's weight table does not cover each row once")
    return np.ascontiguousarray(out.T if first.transposed else out)


FAMILIES = {}


def register_family(family, *aliases):
    for name in (family.name,) + aliases:
        FAMILIES[name] = family
    return family


def load_builtin_families():
    """Families that ship with the library register when mindformers.models is imported (each family package
    imports its convert_mapping); imported on first need, so `import mindformers.checkpoint` stays light."""
    importlib.import_module("mindformers.models")


def family_names():
    """Every registered family name and alias (--model choices of convert_weight.py)."""
    load_builtin_families()
    return sorted(FAMILIES)


def get_family(name, key="--model"):
    if name not in FAMILIES:
        load_builtin_families()
    if name not in FAMILIES:
        raise ConfigError(f"{key}: unknown model '{name}' (choices: {', '.join(sorted(FAMILIES))})")
    return FAMILIES[name]


def family_for_model_type(model_type):
    """The family of our config class `model_type` ('llama', 'qwen2', 'gemma', ...)."""
    return get_family(model_type, key="model_type")
