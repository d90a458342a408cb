"""The parallel mesh a config asks for, and the checks that run before anything is built or compiled.

Batch semantics (MindFormers'): runner_config.batch_size is the batch of ONE data-parallel rank; the global
batch is batch_size x data_parallel x gradient_accumulation_steps. runner_config.global_batch_size may be
given instead (or as well): it must then split evenly over data_parallel x gradient_accumulation_steps.
Each data-parallel rank reads only its own rows on CPU; with parallel.full_batch (Ascend semi-auto parallel)
every rank's loader reads the whole global batch and MindSpore slices it. The global batch is the same either way.
"""
from dataclasses import dataclass

from mindformers.parallel.mesh import describe_mesh
from mindformers.tools.errors import ConfigError

DEFAULT_SHARD_THRESHOLD_KB = 64  # MindSpore's parallel_optimizer_threshold default


@dataclass
class ParallelSettings:
    """parallel_config (+ the optimizer sharding switch of `parallel`) as plain numbers."""

    data_parallel: int = 1
    model_parallel: int = 1
    pipeline_stage: int = 1
    micro_batch_num: int = 1
    vocab_emb_dp: bool = True
    use_seq_parallel: bool = False
    optimizer_shard: bool = False
    full_batch: bool = False
    gradient_aggregation_group: int = 4
    expert_parallel: int = 1  # experts of mixture-of-experts layers split over this many data-parallel ranks
    # parallel.parallel_optimizer_config: parameters smaller than this many KB keep whole optimizer state (MindSpore's
    # parallel_optimizer_threshold, 64 by default), and the number of data-parallel ranks they split over
    optimizer_shard_threshold_kb: float = DEFAULT_SHARD_THRESHOLD_KB
    optimizer_weight_shard_size: int = -1

    @property
    def optimizer_shards(self):
        """Data-parallel ranks the optimizer state of a large parameter splits over on CPU (1: not sharded; with
        pipeline stages, over the data-parallel ranks of the stage)."""
        return self.data_parallel if self.optimizer_shard else 1

    @property
    def device_num(self):
        return self.data_parallel * self.model_parallel * self.pipeline_stage

    def describe(self):
        return describe_mesh(self.mesh())

    def mesh(self):
        mesh = {"data_parallel": self.data_parallel, "model_parallel": self.model_parallel,
                "pipeline_stage": self.pipeline_stage}
        if self.expert_parallel > 1:
            mesh["expert_parallel"] = self.expert_parallel
        return mesh


def _positive(section, key, default=1):
    value = section.get(key, default)
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"parallel_config.{key}: expected a positive integer, got {value!r}")
    return value


def parallel_settings(config):
    section = config.get("parallel_config") or {}
    parallel = config.get("parallel") or {}
    options = parallel.get("parallel_optimizer_config") or {}
    threshold = options.get("parallel_optimizer_threshold")
    return ParallelSettings(
        optimizer_shard_threshold_kb=DEFAULT_SHARD_THRESHOLD_KB if threshold is None else threshold,
        optimizer_weight_shard_size=int(options.get("optimizer_weight_shard_size") or -1),
        data_parallel=_positive(section, "data_parallel"), model_parallel=_positive(section, "model_parallel"),
        pipeline_stage=_positive(section, "pipeline_stage"), micro_batch_num=_positive(section, "micro_batch_num"),
        vocab_emb_dp=bool(section.get("vocab_emb_dp", True)),
        use_seq_parallel=bool(section.get("use_seq_parallel", False)),
        optimizer_shard=bool(section.get("optimizer_shard") or parallel.get("enable_parallel_optimizer")),
        full_batch=bool(parallel.get("full_batch", False)),
        gradient_aggregation_group=int(section.get("gradient_aggregation_group") or 4),
        expert_parallel=_positive(section, "expert_parallel"))


def check_worker_count(settings, world_size):
    if settings.device_num != world_size:
        raise ConfigError(
            f"parallel_config: data_parallel ({settings.data_parallel}) x model_parallel ({settings.model_parallel})"
            f" x pipeline_stage ({settings.pipeline_stage}) = {settings.device_num} devices, but {world_size} "
            f"worker(s) were launched; make them equal")


def check_model_split(settings, model_config):
    """Every weight split over model_parallel (heads, kv heads, FFN, vocabulary) must split evenly."""
    mp = settings.model_parallel
    sizes = (("num_heads", model_config.num_heads), ("n_kv_heads", model_config.kv_heads),
             ("intermediate_size", model_config.ffn_size), ("vocab_size", model_config.vocab_size))
    for key, value in sizes:
        if value % mp:
            raise ConfigError(f"model.model_config.{key}: {value} is not divisible by "
                              f"parallel_config.model_parallel ({mp})")
    moe = getattr(model_config, "moe", None)
    if moe and moe.intermediate_size and moe.intermediate_size % mp:
        raise ConfigError(f"moe_config.moe_intermediate_size: {moe.intermediate_size} is not divisible by "
                          f"parallel_config.model_parallel ({mp})")
    if mp > 1 and getattr(model_config, "qkv_concat", False):
        # A split of the fused [q; k; v] (and [gate; up]) rows would hand each rank whole blocks of one of them.
        raise ConfigError(f"model.model_config.qkv_concat: fused q/k/v and gate/up weights cannot be split over "
                          f"parallel_config.model_parallel ({mp}); expected qkv_concat False with model_parallel > 1")


def check_expert_split(settings, model_config):
    """expert_parallel (MindFormers' meaning): the experts split over that many data-parallel ranks, so it divides
    both data_parallel and the number of experts."""
    ep = settings.expert_parallel
    if ep == 1:
        return
    moe = getattr(model_config, "moe", None)
    if moe is None:
        raise ConfigError(f"parallel_config.expert_parallel: {ep} needs a mixture-of-experts model (moe_config with "
                          f"expert_num > 1); expected 1 for a dense model")
    if settings.data_parallel % ep:
        raise ConfigError(f"parallel_config.expert_parallel: {ep} does not divide data_parallel "
                          f"({settings.data_parallel}); the experts split over data-parallel ranks")
    if moe.expert_num % ep:
        raise ConfigError(f"parallel_config.expert_parallel: {ep} does not divide moe_config.expert_num "
                          f"({moe.expert_num})")


def check_sequence_parallel(settings, model_config):
    """use_seq_parallel cuts the sequence between the tensor-parallel regions into model_parallel equal slices."""
    if not settings.use_seq_parallel:
        return
    mp = settings.model_parallel
    if mp == 1:
        raise ConfigError("parallel_config.use_seq_parallel: True needs model_parallel > 1 (the sequence splits over "
                          "the model-parallel ranks); set model_parallel > 1 or use_seq_parallel False")
    if model_config.seq_length % mp:
        raise ConfigError(f"model.model_config.seq_length: {model_config.seq_length} is not divisible by "
                          f"parallel_config.model_parallel ({mp}), which use_seq_parallel splits it over")
    if getattr(model_config, "moe", None):
        raise ConfigError("parallel_config.use_seq_parallel: sequence parallelism with mixture-of-experts layers is "
                          "not available; set use_seq_parallel False")


def check_pipeline(settings, model_config):
    pp = settings.pipeline_stage
    if model_config.num_layers < pp:
        raise ConfigError(f"parallel_config.pipeline_stage: {pp} stages need at least {pp} layers, but "
                          f"model.model_config.num_layers is {model_config.num_layers}")
    if settings.micro_batch_num < pp:
        raise ConfigError(f"parallel_config.micro_batch_num: {settings.micro_batch_num} is less than "
                          f"pipeline_stage ({pp}); expected micro_batch_num >= pipeline_stage")


def rank_batch_size(config, settings):
    """The batch one data-parallel rank trains on per micro step (see the module doc for the semantics)."""
    runner = config.get("runner_config") or {}
    accumulation = int(runner.get("gradient_accumulation_steps") or 1)
    per_rank = runner.get("batch_size")
    global_batch = runner.get("global_batch_size")
    if global_batch is None:
        return int(per_rank or 1)
    # With pipeline stages batch_size is one micro-batch's (MindFormers): a step reads micro_batch_num of them.
    micro = settings.micro_batch_num if settings.pipeline_stage > 1 else 1
    ranks = settings.data_parallel * accumulation * micro
    if isinstance(global_batch, bool) or not isinstance(global_batch, int) or global_batch < 1:
        raise ConfigError(f"runner_config.global_batch_size: expected a positive integer, got {global_batch!r}")
    if global_batch % ranks:
        micro_words = f" x micro_batch_num ({micro})" if micro > 1 else ""
        raise ConfigError(f"runner_config.global_batch_size: {global_batch} is not divisible by data_parallel "
                          f"({settings.data_parallel}) x gradient_accumulation_steps ({accumulation}){micro_words}")
    if per_rank is not None and per_rank * ranks != global_batch:
        raise ConfigError(f"runner_config.batch_size: {per_rank} per data-parallel rank x {ranks} gives "
                          f"{per_rank * ranks}, but global_batch_size is {global_batch}; set one of them")
    return global_batch // ranks


def _get(section, key):
    return section.get(key) if isinstance(section, dict) else getattr(section, key, None)


def check_device(settings, model_config, device_target):
    """CPU runs data, tensor (model, sequence), pipeline and expert parallelism and the parallel optimizer written
    into the layers and the train step: MindSpore 2.10 cannot compile semi-auto parallel graphs for CPU
    (mindformers/parallel/pipeline_*.py for the stages); these combinations are not written."""
    if device_target != "CPU":
        return
    if settings.pipeline_stage > 1 and getattr(model_config, "pet_config", None):
        raise ConfigError(f"model.model_config.pet_config: LoRA/prefix tuning with parallel_config.pipeline_stage "
                          f"{settings.pipeline_stage} is not available on CPU; set pipeline_stage to 1")
    if settings.pipeline_stage > 1 and getattr(model_config, "moe", None):
        raise ConfigError(f"parallel_config.pipeline_stage: {settings.pipeline_stage} stages of a mixture-of-experts "
                          "model are not available on CPU; set pipeline_stage to 1")
    pet = getattr(model_config, "pet_config", None)
    if pet and settings.use_seq_parallel:
        raise ConfigError("model.model_config.pet_config: LoRA/prefix tuning with parallel_config.use_seq_parallel is "
                          "not available on CPU; set use_seq_parallel False")
    if pet and settings.model_parallel > 1 and int(_get(pet, "mid_dim") or 0) > 0:
        # the projected prefixes are one (2 x kv width) matrix whose split would not follow the heads
        raise ConfigError(f"model.model_config.pet_config.mid_dim: prefix projection with parallel_config."
                          f"model_parallel {settings.model_parallel} is not available on CPU; expected mid_dim 0")
    shard_size = settings.optimizer_weight_shard_size
    if settings.optimizer_shards > 1 and shard_size not in (-1, 0, settings.data_parallel):
        raise ConfigError(f"parallel.parallel_optimizer_config.optimizer_weight_shard_size: {shard_size} is not "
                          f"available on CPU, where the optimizer state splits over all data_parallel "
                          f"({settings.data_parallel}) ranks; expected -1")
    if settings.expert_parallel > 1 and getattr(model_config, "pet_config", None):
        raise ConfigError(f"model.model_config.pet_config: LoRA/prefix tuning with parallel_config.expert_parallel "
                          f"{settings.expert_parallel} is not available on CPU; set expert_parallel to 1")


def check_parallel_config(config, model_config, world_size, device_target):
    """All checks of a distributed run, in the order a user can fix them; returns the settings."""
    settings = parallel_settings(config)
    check_worker_count(settings, world_size)
    check_model_split(settings, model_config)
    check_expert_split(settings, model_config)
    check_sequence_parallel(settings, model_config)
    check_pipeline(settings, model_config)
    rank_batch_size(config, settings)
    check_device(settings, model_config, device_target)
    return settings
