"""A mixture-of-experts feed-forward: a router picks each token's top-k experts, the tokens are dispatched into
per-expert slots, each expert (the family's gated MLP, all experts in one batched weight) runs on its slots, and
the outputs are combined with the routing weights. No loop over tokens, no dynamic shapes:

- positions: a token's place in its expert's queue is an exclusive cumulative sum of the one-hot choices, in the
  order the drop policy gives (all first choices before second choices, or token order with enable_sdrop);
  places beyond the expert's capacity are dropped (their output is zero; the residual carries the token);
- dispatch: slot (expert, place) is filled by gathering its token's row (a slot nobody took gathers a zero row);
- combine: each choice gathers its slot's output row (a dropped or remote choice gathers a zero row) and the
  choices are summed, weighted.

With expert parallelism each rank holds expert_num / expert_parallel experts: it routes its own tokens, sees the
tokens of its expert group, fills the slots of its experts from all of them, and the partial outputs are summed
back to their ranks (mindformers/parallel/expert_parallel.py). Slots per expert and source rank are the capacity
of one rank's batch, so routing, capacity and drops are those of a single process holding that batch.
"""
import mindspore as ms
from mindspore import nn, ops

from mindformers.models.modules.dtypes import to_ms_dtype
from mindformers.models.modules.index_constants import int_range
from mindformers.models.modules.linear import Linear
from mindformers.models.modules.mlp import GatedFeedForward
from mindformers.parallel.expert_parallel import GatherFromExpertGroup, ReduceToExpertGroup, SumOverDataParallel
from mindformers.parallel.groups import ParallelGroups


def expert_capacity(tokens, top_k, experts, factor, training):
    """ceil(top_k * tokens * factor / experts) slots per expert, at least 1 and at most `tokens` (a token takes an
    expert once); `tokens` (every token fits) when dropless (factor <= 0) or not training. Plain arithmetic, so a
    graph-mode construct can call it on its static shapes."""
    if not training or factor <= 0:
        return tokens
    needed = top_k * tokens * factor / experts
    slots = int(needed)
    if slots < needed:
        slots = slots + 1
    return max(1, min(tokens, slots))


class Router(nn.Cell):
    """Scores per expert (a linear layer computed in router_dtype), softmax in float32, the top_k experts of each
    token with their probabilities, renormalised to sum to 1 (norm_topk_prob) and scaled."""

    def __init__(self, hidden_size, settings, param_init_type=ms.float32, init_std=0.02):
        super().__init__()
        self.dense = Linear(hidden_size, settings.expert_num, parallel=None, init_std=init_std,
                            compute_dtype=to_ms_dtype(settings.router_dtype), param_init_type=param_init_type)
        self.top_k = settings.top_k
        self.normalise = settings.norm_topk_prob
        self.scale = settings.routed_scaling_factor
        self.topk = ops.TopK(sorted=True)
        self.softmax = ops.Softmax(axis=-1)

    def construct(self, tokens):
        """tokens (T, hidden) -> (probabilities (T, E), weights (T, k), experts (T, k) int32), float32."""
        probabilities = self.softmax(ops.cast(self.dense(tokens), ms.float32))
        weights, experts = self.topk(probabilities, self.top_k)
        if self.normalise:
            weights = weights / ops.sum(weights, -1, keepdim=True)
        if self.scale != 1.0:
            weights = weights * self.scale
        return probabilities, weights, experts


class MoEFeedForward(nn.Cell):
    """construct(x (batch, seq, hidden)) -> output of x's shape; in training also the router's statistics of this
    rank's batch, (2 * expert_num + 1,) float32: tokens routed to each expert (before capacity), the sum of each
    expert's router probability over the tokens (differentiable: the load-balancing loss is built from both) and
    the number of token choices dropped for capacity."""

    def __init__(self, hidden_size, intermediate_size, settings, activation="silu", compute_dtype=ms.float32,
                 param_init_type=ms.float32, init_std=0.02):
        super().__init__()
        self.experts = settings.expert_num
        self.top_k = settings.top_k
        self.capacity_factor = settings.capacity_factor
        self.drop_by_position = settings.drop_by_position
        self.hidden_size = hidden_size
        self.compute_dtype = compute_dtype
        self.router = Router(hidden_size, settings, param_init_type, init_std)
        self.ffn = GatedFeedForward(hidden_size, intermediate_size, activation=activation,
                                    compute_dtype=compute_dtype, param_init_type=param_init_type, init_std=init_std,
                                    experts=settings.expert_num)
        self.scatter = ops.ScatterNd()
        self.parallelize(ParallelGroups())  # one process holds every expert; the exchanges are identities

    def parallelize(self, groups):
        """With expert parallelism this rank holds a block of expert_num / expert_parallel experts (ExpertLinear
        keeps their weights) and exchanges tokens with its expert group."""
        self.group_size = groups.expert_parallel
        self.local_experts = self.experts // groups.expert_parallel
        self.first_expert = groups.expert_rank * self.local_experts
        self.gather_tokens = GatherFromExpertGroup(groups)
        self.gather_routes = GatherFromExpertGroup(groups)
        self.return_outputs = ReduceToExpertGroup(groups)

    def places(self, experts):
        """(place of each choice in its expert's queue (T, k), tokens routed to each expert (E,)), float32."""
        chosen = ops.one_hot(experts, self.experts, ops.ones((), ms.float32), ops.zeros((), ms.float32))
        tokens = chosen.shape[0]
        if self.drop_by_position:  # the earlier tokens of the batch keep their places
            queue = ops.reshape(chosen, (-1, self.experts))
        else:  # every token's first choice before any second choice
            queue = ops.reshape(ops.transpose(chosen, (1, 0, 2)), (-1, self.experts))
        ahead = ops.cumsum(queue, 0) - queue
        place = ops.sum(ahead * queue, -1)
        if self.drop_by_position:
            place = ops.reshape(place, (tokens, self.top_k))
        else:
            place = ops.transpose(ops.reshape(place, (self.top_k, tokens)), (1, 0))
        return place, ops.sum(chosen, (0, 1))

    def slots(self, experts, places, capacity, tokens):
        """For the group's rows of choices (experts, places: (group * T, k) float32) the slot of each choice among
        this rank's experts, as int32: local expert * (group * capacity) + source rank * capacity + place; a choice
        for another rank's expert or beyond capacity gets the spare slot past the end."""
        rows = experts.shape[0]
        span = self.group_size * capacity
        local = experts - self.first_expert
        source = ops.cast(int_range(0, rows, (rows,)) // tokens, ms.float32)
        mine = ops.logical_and(ops.logical_and(local >= 0, local < self.local_experts), places < capacity)
        slot = local * span + ops.expand_dims(source, -1) * capacity + places
        spare = ops.full_like(slot, float(self.local_experts * span))
        return ops.cast(ops.select(mine, slot, spare), ms.int32)

    def dispatch(self, tokens, slots, capacity):
        """(local experts, group * capacity, hidden): each slot's token row (zeros for an empty slot)."""
        rows, choices = slots.shape
        span = self.group_size * capacity
        total = self.local_experts * span
        # Row index + 1 scattered into the slots (the spare slot past the end collects the rest), 0: empty slot.
        taken = ops.broadcast_to(int_range(1, rows + 1, (rows, 1)), (rows, choices))
        filled = self.scatter(ops.reshape(slots, (-1, 1)), ops.reshape(taken, (-1,)), (total + 1,))[:total] - 1
        source_row = ops.select(filled < 0, ops.full_like(filled, rows), filled)
        padded = ops.concat((tokens, ops.zeros((1, self.hidden_size), tokens.dtype)), 0)
        return ops.reshape(ops.gather(padded, ops.stop_gradient(source_row), 0),
                           (self.local_experts, span, self.hidden_size))

    def combine(self, outputs, slots, weights):
        """(rows, hidden): the weighted sum over each row's choices of their slots' outputs (zero when another
        rank's expert holds the choice or it was dropped)."""
        rows, choices = slots.shape
        flat = ops.reshape(outputs, (-1, self.hidden_size))
        padded = ops.concat((flat, ops.zeros((1, self.hidden_size), flat.dtype)), 0)
        picked = ops.reshape(ops.gather(padded, ops.reshape(ops.stop_gradient(slots), (-1,)), 0),
                             (rows, choices, self.hidden_size))
        return ops.sum(picked * ops.expand_dims(ops.cast(weights, picked.dtype), -1), 1)

    def construct(self, x):
        shape = x.shape
        tokens = ops.reshape(ops.cast(x, self.compute_dtype), (-1, self.hidden_size))
        count = tokens.shape[0]
        capacity = expert_capacity(count, self.top_k, self.experts, self.capacity_factor, self.training)
        probabilities, weights, experts = self.router(tokens)
        places, load = self.places(experts)
        places, load = ops.stop_gradient(places), ops.stop_gradient(load)
        routes = ops.concat((weights, ops.cast(experts, ms.float32), places), -1)
        group_tokens = self.gather_tokens(tokens)
        group_routes = self.gather_routes(routes)
        k = self.top_k
        group_weights = group_routes[:, :k]
        slots = self.slots(ops.stop_gradient(group_routes[:, k:2 * k]), ops.stop_gradient(group_routes[:, 2 * k:]),
                           capacity, count)
        outputs = self.ffn(self.dispatch(group_tokens, slots, capacity))
        output = ops.reshape(self.return_outputs(self.combine(outputs, slots, group_weights)), shape)
        if not self.training:
            return output
        dropped = ops.sum(ops.cast(places >= capacity, ms.float32), (0, 1), keepdim=True)
        statistics = ops.concat((load, ops.sum(probabilities, 0), ops.reshape(dropped, (1,))))
        return output, statistics


class RouterBalance(nn.Cell):
    """The load-balancing loss of a step's mixture-of-experts layers, as transformers' Mixtral computes it with
    output_router_logits (Switch Transformer's loss over all layers at once): with f_e the share of token choices
    routed to expert e and P_e its mean router probability, both taken over every token of every layer,
    loss = expert_num * sum_e f_e * P_e (f_e counts top_k choices per token, so a uniform router scores top_k).

    construct(statistics (layers, 2 * expert_num + 1): each layer's MoEFeedForward statistics of this rank's batch)
    -> (loss, metrics). The statistics are summed over the data-parallel group first, so the loss is the global
    batch's on every rank. metrics (float32, no gradient): [loss, choices dropped for capacity, then tokens routed
    to each expert, layer by layer]."""

    def __init__(self, experts, top_k):
        super().__init__()
        self.experts = experts
        self.top_k = top_k
        self.parallelize(ParallelGroups())

    def parallelize(self, groups):
        self.sum_over_data = SumOverDataParallel(groups)

    def construct(self, statistics):
        total = self.sum_over_data(statistics)
        experts = self.experts
        counts = ops.stop_gradient(total[:, :experts])
        rows = ops.sum(counts) / self.top_k  # tokens x layers
        share = ops.sum(counts, 0) / rows
        probability = ops.sum(total[:, experts:2 * experts], 0) / rows
        loss = experts * ops.sum(share * probability)
        dropped = ops.sum(total[:, 2 * experts:])
        metrics = ops.concat((ops.reshape(loss, (1,)), ops.reshape(dropped, (1,)), ops.reshape(counts, (-1,))))
        return loss, ops.stop_gradient(metrics)


def describe_router_metrics(values, experts, micro_batches=1):
    """RouterBalance's metrics summed over a step's micro-batches, as train_metrics.jsonl records them: aux_loss
    (the micro-batches' mean, as the loss averages them), dropped_tokens (token choices over capacity) and
    expert_load (per mixture-of-experts layer, tokens routed to each expert), both over the whole step."""
    values = [float(v) for v in values]
    loads = values[2:]
    return {"aux_loss": values[0] / micro_batches, "dropped_tokens": int(round(values[1])),
            "expert_load": [[int(round(v)) for v in loads[i:i + experts]] for i in range(0, len(loads), experts)]}
