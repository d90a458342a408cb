"""How a model family's weights and config correspond to HuggingFace's: the declaration types and the registry.

A family module (e.g. mindformers/models/llama/convert_mapping.py) declares one `HFFamily` (families on the shared
decoder through mindformers/models/decoder/hf_layout.py); conversion in both directions, from_pretrained and
save_pretrained all read that one declaration.
"""
import importlib
from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

from mindformers.tools.errors import ConfigError


@dataclass(frozen=True)
class WeightMap:
    """One weight of ours and the HF tensor(s) it holds; several HF tensors are concatenated along dim 0 in
    ours (a fused qkv or gate/up layout). `{layer}` in a name repeats the entry for every decoder layer.
    Shapes are tuples of size names (see `HFFamily.sizes`), one per HF part.

    With `stack` (a size name), the one HF name holds `{expert}` and ours stacks that many HF tensors along a new
    leading dimension (the experts of a mixture-of-experts layer, HF's one tensor per expert); the bytes are
    those of the concatenation, so conversion streams them the same way."""

    ours: str
    hf: Tuple[str, ...]
    shapes: Tuple[Tuple[str, ...], ...]
    when: Optional[str] = None  # a config condition (see HFFamily.conditions) the weight exists under
    stack: Optional[str] = None


def weight(ours, hf, shape, when=None):
    """Shorthand for a one-to-one WeightMap: weight("ours.{layer}.w", "hf.{layer}.w", ("hidden", "vocab"))."""
    return WeightMap(ours, (hf,), (tuple(shape),), when)


def stacked(ours, hf, shape, stack, when=None):
    """Ours (stack, *shape) holds HF's tensors `hf` with {expert} = 0 .. stack - 1, each of `shape`."""
    return WeightMap(ours, (hf,), (tuple(shape),), when, stack)


@dataclass(frozen=True)
class Part:
    hf_name: str
    shape: Tuple[int, ...]


@dataclass(frozen=True)
class PlannedWeight:
    ours: str
    parts: Tuple[Part, ...]
    stacked: bool = False

    @property
    def our_shape(self):
        first = self.parts[0].shape
        if self.stacked:
            return (len(self.parts),) + tuple(first)
        return (sum(p.shape[0] for p in self.parts),) + tuple(first[1:])


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
        def parts(entry, layer):
            names = [(hf, shape) for hf, shape in zip(entry.hf, entry.shapes)]
            if entry.stack:
                (hf, shape), = names
                names = [(hf.replace("{expert}", str(index)), shape) for index in range(sizes[entry.stack])]
            return tuple(Part(hf.format(layer=layer), tuple(sizes[s] for s in shape)) for hf, shape in names)
        return [PlannedWeight(e.ours.format(layer=layer), parts(e, layer), bool(e.stack)) for e, layer in order]


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
