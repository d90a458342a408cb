"""The parallel optimizer (parallel.enable_parallel_optimizer / parallel_config.optimizer_shard) for stand-alone graphs
(CPU), with MindSpore's semantics for the optimizer state: each data-parallel rank keeps and updates only its slice
(along dimension 0 of its own, possibly model-parallel, piece) of every large parameter's optimizer moments.

A step: the gradients, already averaged over the data-parallel group (composed reduce-scatter = that all-reduce,
then this rank's slice), are cut to this rank's slice; the YAML's optimizer updates this rank's slice of each weight
with its slice of the moments; the updated slices are all-gathered into the whole weights the next forward reads.
Parameters under parallel_optimizer_threshold KB keep whole optimizer state, as in MindSpore. The weights themselves
stay whole between steps on CPU (so the forward needs no gather); only the moments (and the update) are split.

The moments keep their usual names (adam_m.<weight>, adam_v.<weight>); the layout file records which weights'
optimizer state is split (`optimizer_parts`), so resharding (auto_trans_ckpt) moves them between meshes like any
other piece. The slice each rank updates is a parameter too (optimizer_shard.<weight>), refreshed from the weight
before every update (so loading weights never leaves it stale) and left out of checkpoints.
"""
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops

from mindformers.checkpoint.checkpoint_io import WORKING_COPY_PREFIX
from mindformers.models.modules.layout import expert_parameters
from mindformers.parallel.tensor_parallel import PlaceAmongZeros, SumOverGroup
from mindformers.tools.errors import ConfigError

SLICE_PREFIX = WORKING_COPY_PREFIX  # the slices are refreshed from the weights every step: not saved


def sharded_state_names(network, settings):
    """Names of `network`'s trainable parameters whose optimizer state splits over the data-parallel ranks: those of
    at least parallel_optimizer_threshold KB (this rank's piece counts), except the experts of mixture-of-experts
    layers split over expert_parallel (ranks of one data-parallel group hold different experts there)."""
    if settings.optimizer_shards == 1:
        return set()
    experts = expert_parameters(network) if settings.expert_parallel > 1 else set()
    return {p.name for p in network.trainable_params()
            if p.size * p.itemsize >= settings.optimizer_shard_threshold_kb * 1024 and p.name not in experts}


def check_shardable(params, shards):
    """Every parameter whose state splits must split evenly along dimension 0."""
    for param in params:
        if not param.shape or param.shape[0] % shards:
            raise ConfigError(
                f"parallel.enable_parallel_optimizer: parameter {param.name} of shape {tuple(param.shape)} does not "
                f"split into data_parallel ({shards}) equal parts along dimension 0; raise "
                f"parallel.parallel_optimizer_config.parallel_optimizer_threshold above its size "
                f"({param.size * param.itemsize / 1024:g} KB) or set enable_parallel_optimizer False")


class DataParallelShardedOptimizer(nn.Cell):
    """construct(grads) -> the inner optimizer's result. `build(params)` builds the YAML's optimizer over the given
    parameters; the state of those named in `sharded_names` splits; `groups` gives this rank's data-parallel index
    and group. Looks like an optimizer to the train step
    and the loop (`parameters`, `global_step`, `get_lr`)."""

    def __init__(self, params, build, sharded_names, groups):
        super().__init__(auto_prefix=False)
        params = list(params)
        self.shards = groups.data_parallel
        check_shardable([p for p in params if p.name in sharded_names], self.shards)
        self.rank = groups.data_rank
        slices = {p.name: Parameter(Tensor(self.own_slice_of(p.asnumpy()), p.dtype), name=SLICE_PREFIX + p.name)
                  if p.name in sharded_names else p for p in params}
        self.optimizer = build(list(slices.values()))
        for state in self.optimizer.get_parameters():  # adam_m.optimizer_shard.<w> -> adam_m.<w>
            if "." + SLICE_PREFIX in state.name:
                state.name = state.name.replace("." + SLICE_PREFIX, ".", 1)
        # In the order the optimizer takes them (weight-decay groups reorder), which the train step's gradients follow.
        by_name = {p.name: p for p in params}
        names = [p.name[len(SLICE_PREFIX):] if p.name.startswith(SLICE_PREFIX) else p.name
                 for p in self.optimizer.parameters]
        self.parameters = ParameterTuple(by_name[name] for name in names)
        self.slices = ParameterTuple(slices[name] for name in names)
        self.sharded = tuple(slices[name] is not by_name[name] for name in names)
        self.place = PlaceAmongZeros(0, self.shards, self.rank)
        self.sum_over_data_parallel = SumOverGroup(groups.data_group)

    @property
    def global_step(self):
        return self.optimizer.global_step

    def get_lr(self):
        return self.optimizer.get_lr()

    def own_slice_of(self, value):
        size = value.shape[0] // self.shards
        return value[self.rank * size:(self.rank + 1) * size]

    def gather(self, part):
        """Every rank's slice joined along dimension 0 (AllGather is world-only on CPU: zeros around mine, summed)."""
        return self.sum_over_data_parallel(self.place(part))

    def construct(self, grads):
        local = ()
        for index in range(len(grads)):
            grad = grads[index]
            if self.sharded[index]:
                refreshed = ops.assign(self.slices[index], self.own_slice_of(self.parameters[index]))
                grad = ops.depend(self.own_slice_of(grad), refreshed)
            local = local + (grad,)
        done = self.optimizer(local)
        for index in range(len(grads)):
            if self.sharded[index]:
                whole = self.gather(ops.depend(self.slices[index], done))
                done = ops.depend(done, ops.assign(self.parameters[index], whole))
        return done

