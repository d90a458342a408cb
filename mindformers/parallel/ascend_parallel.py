"""Ascend only (cannot run on CPU, where MindSpore 2.10 rejects semi-auto parallel with "Invalid backend: CPU"):
semi_auto_parallel context and operator shard strategies derived from each layer's declared layout.

Kept apart from the CPU data-parallel path so the CPU code never imports or depends on it.
"""
import mindspore as ms

from mindformers.models.modules.linear import Linear
from mindformers.tools.errors import ConfigError


_PARALLEL_MODES = {0: ms.ParallelMode.DATA_PARALLEL, 1: ms.ParallelMode.SEMI_AUTO_PARALLEL,
                   2: ms.ParallelMode.AUTO_PARALLEL, 3: ms.ParallelMode.HYBRID_PARALLEL}
# `parallel` keys handed to MindSpore's auto-parallel context as they are.
_PASSED_THROUGH = ("enable_alltoall", "dataset_strategy", "pipeline_config", "loss_repeated_mean")


def set_semi_auto_parallel(config, settings, world_size):
    parallel = config.get("parallel") or {}
    strategy = parallel.get("strategy_ckpt_config") or {}
    mode = parallel.get("parallel_mode", 1)
    options = {key: parallel[key] for key in _PASSED_THROUGH if parallel.get(key) is not None}
    if parallel.get("parallel_optimizer_config"):
        options["parallel_optimizer_config"] = dict(parallel["parallel_optimizer_config"])
    ms.set_auto_parallel_context(
        parallel_mode=_PARALLEL_MODES.get(mode, mode), device_num=world_size,
        pipeline_stages=settings.pipeline_stage, full_batch=settings.full_batch,
        gradients_mean=bool(parallel.get("gradients_mean", False)),
        enable_parallel_optimizer=settings.optimizer_shard,
        search_mode=parallel.get("search_mode", "sharding_propagation"),
        strategy_ckpt_config={"save_file": strategy.get("save_file") or parallel.get("strategy_ckpt_save_file")
                              or "./ckpt_strategy.ckpt",
                              "only_trainable_params": bool(strategy.get("only_trainable_params", False))},
        **options)


def linear_strategy(split_dim, dp, mp):
    """MatMul(x (tokens, in), W^T with W (out, in)): column-parallel splits W's dim 0, row-parallel its dim 1."""
    if split_dim == 0:
        return ((dp, 1), (mp, 1))
    if split_dim == 1:
        return ((dp, mp), (1, mp))
    return ((dp, 1), (1, 1))


def apply_shard_strategies(network, settings):
    """Shard every Linear's matmul as its weight's declared layout says, and assign decoder layers to pipeline
    stages in equal consecutive blocks; other operators are left to MindSpore's sharding propagation."""
    dp, mp = settings.data_parallel, settings.model_parallel
    from mindformers.models.modules.moe import MoEFeedForward  # pylint: disable=import-outside-toplevel
    if any(isinstance(cell, MoEFeedForward) for _, cell in network.cells_and_names()):
        # The mixture-of-experts layer exchanges tokens with collectives of its own (stand-alone graphs); its
        # semi-auto shard strategies (routing groups per data-parallel rank, experts over expert_parallel) are not
        # written yet.
        raise ConfigError("moe_config: mixture-of-experts models run with use_parallel on CPU (stand-alone graphs "
                          "with explicit collectives) or on one device; Ascend semi-auto parallel is not available "
                          "for them yet")
    for _, cell in network.cells_and_names():
        if isinstance(cell, Linear):
            cell.matmul.shard(linear_strategy(cell.param_layout.get("weight"), dp, mp))
    layers = network.decoder_layers()
    for index, layer in enumerate(layers):
        layer.pipeline_stage = index * settings.pipeline_stage // len(layers)
