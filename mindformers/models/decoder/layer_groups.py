"""Generation under context.layerwise_compile: the decoder layers run in groups of consecutive layers, one traced graph
per group structure, instead of one graph call per layer.

Each call of a compiled graph costs far more on CPU than its kernels' launches: measured on SmolLM2-135M (30 layers,
load average ~3, the same process alternating), decode ran at 9.2-9.9 tokens/s with a graph call per layer and at
17.9-19.9 tokens/s with the whole step as one traced graph. But one graph of all 30 layers took ~4.4 s to compile
per step shape (and prefill and decode are two shapes), where a layer's graph takes ~0.15 s: the compile grows with
the graph, and layers of one structure share a graph only when each is its own. Groups of about sqrt(layers)
consecutive layers (5 groups of 6 for 30) take both: the group's graph is traced once with the group's weights and
key/value tables as inputs (layerwise.LayerGraph's weight swap, applied to each layer of the group's template) and
reused by every group of the same layers' structures, so a decode step makes ~sqrt(layers) graph calls and the
compile is ~sqrt(layers) layers' worth per shape.

Only generation steps take this path (a cache given, the model not training, no attention mask); training and
plain forwards still run layer by layer (layerwise.py).
"""
import math

from mindformers.models.decoder.layerwise import LayerGraph, _attached

STEP_TENSORS = 4  # of a generation cache, shared by every layer: positions, blocked, slots, columns


def group_size(num_layers):
    """Layers per group: about sqrt(num_layers), so graph calls per step and layers per compiled graph stay alike."""
    return max(1, math.ceil(math.sqrt(num_layers)))


class LayerGroupGraph(LayerGraph):
    """The traced graph of consecutive layers: called with any group whose layers have the same structures, in
    order; inputs are the hidden states, the cache's step tensors, each layer's key and value tables, then each
    layer's weights."""

    def __init__(self, templates):
        present = (False, True, any(_attached(cell) is not None for _, cell in templates[0].cells_and_names()))
        super().__init__(templates[0], present)
        self.parts = [LayerGraph(template, present) for template in templates]

    def weights_of(self, layer):
        return [weight for part, one in zip(self.parts, layer) for weight in part.weights_of(one)]

    def _forward(self, x, *tensors):
        self.traces += 1
        step = tuple(tensors[:STEP_TENSORS])
        tables = tensors[STEP_TENSORS:STEP_TENSORS + 2 * len(self.parts)]
        weights = tensors[STEP_TENSORS + 2 * len(self.parts):]
        for index, part in enumerate(self.parts):
            count = len(part.slots) + len(part.attached)
            with part.weights_swapped(weights[:count]):
                cache = step + (tables[2 * index], tables[2 * index + 1])
                x = type(part.template).construct(part.template, x, None, cache)
            weights = weights[count:]
        return x


class LayerGroups:
    """Routes a DecoderModel's generation steps through LayerGroupGraphs, kept in the model's LayerwiseGraphs (so
    their trace seconds count as compile in generation's timing)."""

    def __init__(self, model, graphs):
        self.model = model
        self.graphs = graphs
        layers = list(model.layers)
        size = group_size(len(layers))
        self.groups = [(start, layers[start:start + size]) for start in range(0, len(layers), size)]

    def applies(self, attention_mask, cache):
        return cache is not None and attention_mask is None and not self.model.training and \
            not self.model.sequence_sharded

    def run(self, input_ids, cache):
        """DecoderModel.construct for a generation step: embeddings, the layer groups, the final norm."""
        model = self.model
        h = model.embed(input_ids, None, cache)
        step, keys, values = tuple(cache[:STEP_TENSORS]), cache[STEP_TENSORS], cache[STEP_TENSORS + 1]
        for start, layers in self.groups:
            attached = any(_attached(cell) is not None for _, cell in layers[0].cells_and_names())
            key = ("group", tuple(self.graphs.structures[id(layer)] for layer in layers), attached)
            graph = self.graphs.graphs.get(key)
            if graph is None:
                graph = self.graphs.graphs[key] = LayerGroupGraph(layers)
            tables = tuple(table for index in range(start, start + len(layers))
                           for table in (keys[index], values[index]))
            h = graph.run((h,) + step + tables, graph.weights_of(layers), writes_tables=True)
        return model.final_hidden(h)

    def install(self):
        model = self.model

        def construct(input_ids, attention_mask=None, cache=None):
            if self.applies(attention_mask, cache):
                return self.run(input_ids, cache)
            return type(model).construct(model, input_ids, attention_mask, cache)

        model.construct = construct
        return self


def install_layer_groups(network, graphs):
    """Route the generation steps of every DecoderModel in `network` through layer groups."""
    from mindformers.models.decoder.causal_lm import DecoderModel  # pylint: disable=import-outside-toplevel
    for _, cell in network.cells_and_names():
        if isinstance(cell, DecoderModel):
            LayerGroups(cell, graphs).install()
