"""One pipeline stage of a causal LM on CPU: the stage's share of the built model, and its forward and backward.

The whole model is built on every rank with the run's seed (so every stage starts from the single process'
weights), then cut down to the stage's parts as mindformers/parallel/mesh.py places them: decoder layer i on stage
i * pp // num_layers, the embedding on the first stage, the final norm, the head and the loss on the last. A model
with tied word embeddings keeps the embedding on the last stage too (its head reads it); the two copies start equal
and stay equal because their gradients are summed across the two stages. Parameter names stay those of the whole
model, so checkpoints, layout files and resharding see the usual names.

The backward of a micro-batch recomputes the stage's forward from the input the stage kept (MindSpore has no
handle to a finished forward's graph that a later backward could reuse), so a stage holds one input per micro-batch
in flight, not every layer's activations.
"""
from mindspore import ParameterTuple, nn, ops

from mindformers.parallel.layout_file import weight_entries
from mindformers.parallel.mesh import layer_stage
from mindformers.parallel.optimizer_shard import sharded_state_names
from mindformers.tools.errors import ConfigError


def stage_layers(num_layers, stages, stage):
    """The decoder layers stage `stage` holds, in order."""
    return tuple(i for i in range(num_layers) if layer_stage(i, num_layers, stages) == stage)


def holds_tied_embedding(network, stages, stage):
    """Whether this stage holds a copy of the word embedding that another stage holds too."""
    return stages > 1 and bool(network.config.tie_word_embeddings) and stage in (0, stages - 1)


def cut_to_stage(network, settings, stage):
    """Drop from `network` (a DecoderForCausalLM, in place) every part another stage holds; returns it. The layer
    list keeps its length (the other stages' layers become empty placeholders) so layer indices stay the model's;
    the layout of the whole model is kept for the layout file."""
    stages = settings.pipeline_stage
    if stages == 1:
        return network
    if getattr(network, "router_balance", None) is not None:
        raise ConfigError("parallel_config.pipeline_stage: mixture-of-experts models do not run with pipeline stages "
                          "on CPU; expected pipeline_stage 1")
    network.whole_model_entries = weight_entries(network, settings.model_parallel, local_shards=True)
    # with the parallel optimizer: every stage's weights whose moments split, so one rank's layout file says it
    network.whole_model_sharded_states = sharded_state_names(network, settings)
    model = network.model
    names = {id(param): param.name for param in network.get_parameters()}
    kept = stage_layers(len(model.layers), stages, stage)
    for index in range(len(model.layers)):
        if index not in kept:
            model.layers[index] = nn.Identity()
    first, last = stage == 0, stage == stages - 1
    if not first:
        for part in ("position_embeddings", "embedding_norm"):
            if hasattr(model, part):
                delattr(model, part)
        if not (last and network.config.tie_word_embeddings):
            del model.tok_embeddings
    if not last:
        del model.norm_out
        if hasattr(network, "lm_head"):
            del network.lm_head
    for param in network.get_parameters():  # replacing list items renamed nothing kept, but be sure
        param.name = names[id(param)]
    return network


class StageForward(nn.Cell):
    """construct(hidden, input_ids, labels, weight): the first stage embeds input_ids (hidden is a placeholder),
    the others start from `hidden`; the last stage returns its loss x weight, the others their output hidden states.
    `labels` are the rows' labels (input_ids again when the data has none); `weight` scales the loss of one
    micro-batch to its share of the step's targets."""

    def __init__(self, network, stages, stage):
        super().__init__(auto_prefix=False)
        self.network = network
        self.first, self.last = stage == 0, stage == stages - 1
        self.layer_ids = stage_layers(len(network.model.layers), stages, stage)
        self.sequence_sharded = network.model.sequence_sharded

    def construct(self, hidden, input_ids, labels, weight):
        if self.first:
            hidden = self.network.model.embed(input_ids[:, :-1])
            if self.sequence_sharded:  # the stages exchange each rank's slice of the sequence
                hidden = self.network.model.scatter_sequence(hidden)
        for index in self.layer_ids:
            hidden = self.network.model.layers[index](hidden)
        if self.last:
            return self.network.loss_of_hidden(hidden, input_ids, labels) * weight
        return hidden


class StageBackward(nn.Cell):
    """construct(hidden, input_ids, labels, weight, sens, accumulated) -> (gradient of `hidden`, accumulated +
    the gradients of `weights`): the stage's forward recomputed and differentiated with `sens` as the gradient of
    its output (the next stage's, or the loss scale on the last stage)."""

    def __init__(self, forward, weights):
        super().__init__(auto_prefix=False)
        self.forward = forward
        self.weights = ParameterTuple(weights)
        self.grad = ops.GradOperation(get_all=True, get_by_list=True, sens_param=True)

    def construct(self, hidden, input_ids, labels, weight, sens, accumulated):
        input_grads, grads = self.grad(self.forward, self.weights)(hidden, input_ids, labels, weight, sens)
        return input_grads[0], tuple(a + g for a, g in zip(accumulated, grads))


class TargetCount(nn.Cell):
    """construct(input_ids, labels) -> the number of targets of the rows that count in the loss (float32)."""

    def __init__(self, network):
        super().__init__(auto_prefix=False)
        self.network = network

    def construct(self, input_ids, labels):
        return self.network.target_count(input_ids, labels)


def activation_shape(network, micro_batch_size):
    """(shape, dtype) of the hidden states that cross a stage boundary for one micro-batch: with sequence
    parallelism each rank's slice of the sequence, which the rank at the same model-parallel place in the next stage
    continues."""
    config, model = network.config, network.model
    seq = config.seq_length // model.scatter_sequence.shards if model.sequence_sharded else config.seq_length
    return (micro_batch_size, seq, config.hidden_size), model.compute_dtype
