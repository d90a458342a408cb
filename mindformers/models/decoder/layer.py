"""One decoder layer: pre-norm attention and pre-norm feed-forward, each with a residual; parts from the config."""
import hashlib

import mindspore as ms
from mindspore import nn

from mindformers.models.decoder.choices import make_attention, make_feed_forward, make_norm
from mindformers.models.modules.moe import MoEFeedForward
from mindformers.parallel.sequence_parallel import GatherFromSequenceParallel

# Attributes that differ between otherwise identical layers without changing what they compute.
_PER_INSTANCE_ATTRIBUTES = ("_create_time", "layer_id")
_PLAIN_VALUES = (int, float, str, bool, type(None), tuple)


def structure_key(cell):
    """A digest of everything in `cell` that decides its compiled graph: every sub-cell's class, plain attributes and
    flags, every primitive's attributes (Ascend shard strategies live there) and every parameter's shape, dtype and
    requires_grad. Two layers with the same key compute the same function of their inputs and parameters."""
    parts = []
    for name, sub in cell.cells_and_names():
        parts.append(f"{name}:{type(sub).__qualname__}:{sorted(sub.get_flags().items())}")
        for attr, value in sorted(vars(sub).items()):
            if attr in _PER_INSTANCE_ATTRIBUTES:
                continue
            if isinstance(value, _PLAIN_VALUES):
                parts.append(f"{name}.{attr}={value!r}")
            elif isinstance(value, ms.ops.Primitive):
                parts.append(f"{name}.{attr}={value.name}{sorted(value.attrs.items())}")
    for name, param in cell.parameters_and_names():
        parts.append(f"{name}:{param.shape}:{param.dtype}:{param.requires_grad}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class DecoderLayer(nn.Cell):
    """Graph mode compiles the layer's graph once and reuses it for every layer with the same structure
    (`lazy_inline`, inlined in the front end because the CPU backend cannot run uninlined subgraphs): the front-end
    compile time stops growing with the layer count. MindSpore keys that reuse on `cell_init_args`; here the key is
    read at compile time from the layer as it is then (after LoRA, recompute or freezing changed some layers), so
    layers that differ never share a graph. Training graphs share; inference graphs do not (see cell_init_args)."""

    @ms.lazy_inline(policy="front")
    def __init__(self, config, layer_id, use_fused_kernels=False):
        super().__init__()
        self.layer_id = layer_id
        self.attention_norm = make_norm(config, use_fused_kernels)
        self.attention = make_attention(config, use_fused_kernels)
        self.ffn_norm = make_norm(config, use_fused_kernels)
        self.feed_forward = make_feed_forward(config, layer_id)
        self.has_experts = isinstance(self.feed_forward, MoEFeedForward)
        self.sequence_sharded = False

    def parallelize(self, groups):
        """Sequence parallelism: x and the residual stream hold this rank's slice of the sequence; the normed slices
        are gathered into the whole sequence for attention and the MLP, whose row-parallel output projections
        reduce-scatter back to slices."""
        self.sequence_sharded = groups.sequence_sharded
        if self.sequence_sharded:
            self.attention_norm.on_sequence_shards(groups)
            self.ffn_norm.on_sequence_shards(groups)
            self.gather_sequence = GatherFromSequenceParallel(groups)

    @property
    def cell_init_args(self):
        key = "lazy_inline_DecoderLayer_" + structure_key(self)
        if not self.training:
            # Generation writes each layer's key/value tables in place; a shared graph writing into tables passed
            # as arguments gives wrong tokens on CPU (MindSpore 2.10), so inference graphs keep one per layer.
            key += f"_layer{self.layer_id}"
        return key

    @cell_init_args.setter
    def cell_init_args(self, value):
        """lazy_inline sets a key from the constructor's arguments (which include layer_id); the structure decides."""
        del value
        self._cell_init_args = ""  # MindSpore appends to it when sub-cells are replaced; the property ignores it

    def whole_sequence(self, x):
        if self.sequence_sharded:
            return self.gather_sequence(x)
        return x

    def construct(self, x, attention_mask=None, cache=None):
        """Training, full forwards and generation alike; `cache` is generation's (see Attention.construct). A
        mixture-of-experts layer in training returns (output, its router's statistics)."""
        h = x + self.attention(self.whole_sequence(self.attention_norm(x)), attention_mask, cache)
        if self.has_experts and self.training:
            out, statistics = self.feed_forward(self.ffn_norm(h))
            return h + out, statistics
        return h + self.feed_forward(self.whole_sequence(self.ffn_norm(h)))
