"""--dry_run: per-device memory of a config's mesh and the layout of every weight, without any device.

The network is built from the real model code with weights left unallocated (shape_only), so parameter
counts and split dimensions come from the layers' own declarations (parameter_splits; experts of mixture-of-experts
layers split over expert_parallel). Sequence length does
not shape any weight, so the structure is built at a short one (rotary tables and masks stay small); the
activation estimate uses the config's real sequence length.
"""
import math
import re

from mindformers.models.modules.layout import EXPERT_AXIS, MODEL_AXIS, parameter_splits
from mindformers.models.modules.shape_only import shape_only
from mindformers.parallel.mesh import layer_stage, stage_of
from mindformers.parallel.parallel_check import (DEFAULT_SHARD_THRESHOLD_KB, check_expert_split, check_model_split,
                                                 check_pipeline, parallel_settings, rank_batch_size)
from mindformers.tools.errors import ConfigError

GB = 1024 ** 3
BYTES = {"float32": 4, "fp32": 4, "float16": 2, "fp16": 2, "bfloat16": 2, "bf16": 2}
STRUCTURE_SEQ = 8
ADAM_MOMENTS = 2  # m and v
FP32_STATE_OPTIMIZERS = ("FP32StateAdamWeightDecay",)  # moments in float32 whatever the weights' dtype
INFERENCE_MODES = ("predict", "eval")


def parse_memory(text, key="--device_memory"):
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)B?\s*", str(text), re.IGNORECASE)
    if not match:
        raise ConfigError(f"{key}: expected a size such as 64GB, got {text!r}")
    power = " KMGT".index(match.group(2).upper() or " ")
    return float(match.group(1)) * 1024 ** power


def mesh_for(settings, device_num):
    """--device_num scales data_parallel; model_parallel x pipeline_stage stay as the config says."""
    if device_num is None:
        return settings
    fixed = settings.model_parallel * settings.pipeline_stage
    if device_num < 1 or device_num % fixed:
        raise ConfigError(f"--device_num: {device_num} is not a multiple of model_parallel x pipeline_stage "
                          f"({settings.model_parallel} x {settings.pipeline_stage} = {fixed})")
    settings.data_parallel = device_num // fixed
    return settings


def build_structure(config):
    """(model config at the real sizes, network structure at a short sequence, with pet_config applied)."""
    import mindformers  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import  (registers classes)
    from mindformers.pet import apply_pet  # pylint: disable=import-outside-toplevel
    from mindformers.tools.register import MindFormerModuleType, build_from_config  # noqa: E501 pylint: disable=import-outside-toplevel
    from mindformers.models.decoder.config import run_model_arguments, run_model_section  # noqa: E501 pylint: disable=import-outside-toplevel
    model = config.get("model") or {}
    if not model.get("model_config") or not model.get("arch"):
        raise ConfigError("model: expected model.model_config and model.arch sections")
    real = build_from_config(run_model_section(config), MindFormerModuleType.CONFIG,
                             default_args=run_model_arguments(config),
                             where="model.model_config")
    short = run_model_section(config, seq_length=STRUCTURE_SEQ, max_position_embedding=STRUCTURE_SEQ)
    with shape_only():
        small = build_from_config(short, MindFormerModuleType.CONFIG,
                                  default_args=run_model_arguments(config),
                                  where="model.model_config")
        network = build_from_config(model["arch"], MindFormerModuleType.MODELS, default_args={"config": small},
                                    where="model.arch")
        if getattr(real, "pet_config", None):
            network = apply_pet(network, real.pet_config)
    return real, network


def local_shape(shape, splits, settings):
    """The shape one device holds of a weight split as `splits` ({mesh axis: dim}) on the mesh of `settings`:
    model-parallel dims over model_parallel, the experts over expert_parallel."""
    shape = list(shape)
    sizes = {MODEL_AXIS: settings.model_parallel, EXPERT_AXIS: settings.expert_parallel}
    for axis, dim in splits.items():
        shape[dim] //= sizes[axis]
    return shape


def recomputed_layers(config, layers_on_stage):
    recompute = (config.get("recompute_config") or {}).get("recompute")
    if recompute is True:
        return layers_on_stage
    if isinstance(recompute, (list, tuple)):
        return min(layers_on_stage, int(max(recompute) if recompute else 0))
    return 0


def layer_activation_bytes(mc, settings, batch, seq):
    """One decoder layer's activations on one device (Megatron-style count, widths from the model config): the norm
    inputs/outputs, q/k/v, the attention output, the MLP's kept tensors (four for a gated MLP) and, without flash
    attention, the softmax scores."""
    t, s, b, h = settings.model_parallel, seq, batch, mc.hidden_size
    c = BYTES[mc.compute_dtype.lower()]
    replicated = 4 * h / (t if settings.use_seq_parallel else 1)
    attention = (mc.q_size + 2 * mc.kv_size) / t + mc.q_size / t
    per_layer = c * s * b * (replicated + attention + mc.mlp_activation_width(s * b) / t)
    if not mc.use_flash_attention:
        per_layer += b * (mc.num_heads / t) * s * s * (BYTES[mc.softmax_compute_type.lower()] + c)
    return per_layer


def activation_bytes(config, mc, settings, batch, layers_on_stage, last_stage):
    """Activations kept for the backward pass on one device: every layer's (a recomputed layer keeps only its
    input), one layer being recomputed, and on the last stage the logits. 1F1B keeps min(pp, micro_batch_num)
    micro-batches in flight on the first stage."""
    s, b, t, c = mc.seq_length, batch, settings.model_parallel, BYTES[mc.compute_dtype.lower()]
    per_layer = layer_activation_bytes(mc, settings, b, s)
    layer_input = c * s * b * mc.hidden_size
    recomputed = recomputed_layers(config, layers_on_stage)
    kept = recomputed * layer_input + (layers_on_stage - recomputed) * per_layer
    working = per_layer if recomputed else 0  # the layer being recomputed during backward
    in_flight = min(settings.pipeline_stage, settings.micro_batch_num) if settings.pipeline_stage > 1 else 1
    head = s * b * mc.vocab_size / t * (c + 8) if last_stage else 0  # logits + float32 loss copy and its grad
    return in_flight * kept + working + head


def inference_activation_bytes(mc, settings, batch, last_stage):
    """A forward pass keeps nothing for a backward: one layer's working set, and the float32 logits."""
    head = mc.seq_length * batch * mc.vocab_size / settings.model_parallel * 4 if last_stage else 0
    return layer_activation_bytes(mc, settings, batch, mc.seq_length) + head


def kv_cache_tokens(mc, batch):
    """Tokens the KV cache holds: with is_dynamic (MindFormers' paged attention) num_blocks x block_size shared by
    the batch, else batch x seq_length."""
    if getattr(mc, "is_dynamic", False):
        return mc.num_blocks * mc.block_size
    return batch * mc.seq_length


def kv_cache_bytes(mc, settings, batch, layers_on_stage):
    """use_past: keys and values of every layer, in compute_dtype, kv heads split over model_parallel."""
    if not mc.use_past:
        return 0
    heads = max(1, mc.kv_heads // settings.model_parallel)
    return 2 * layers_on_stage * heads * mc.size_per_head * kv_cache_tokens(mc, batch) * BYTES[mc.compute_dtype.lower()]


def optimizer_sharding(config, settings):
    """(shard count, threshold bytes, accumulation sharded) of MindSpore's parallel optimizer, or shard count 1.
    Weights, gradients and moments of every parameter of at least parallel_optimizer_threshold KB whose first
    dimension splits evenly are cut over the data-parallel ranks (optimizer_weight_shard_size of them when set)."""
    if not settings.optimizer_shard or settings.data_parallel == 1:
        return 1, 0, True
    options = (config.get("parallel") or {}).get("parallel_optimizer_config") or {}
    shards = options.get("optimizer_weight_shard_size") or -1
    shards = settings.data_parallel if shards in (-1, 0) else min(int(shards), settings.data_parallel)
    threshold = options.get("parallel_optimizer_threshold")
    threshold = DEFAULT_SHARD_THRESHOLD_KB if threshold is None else threshold
    return shards, threshold * 1024, bool(options.get("gradient_accumulation_shard", False))


def accumulates_gradients(config, settings):
    runner = config.get("runner_config") or {}
    return int(runner.get("gradient_accumulation_steps") or 1) > 1 or (
        settings.pipeline_stage > 1 and settings.micro_batch_num > 1)


def moment_bytes(config, param_size):
    optimizer = (config.get("optimizer") or {}).get("type", "AdamW")
    return 4 if optimizer in FP32_STATE_OPTIMIZERS else param_size


def estimate(config, mc, network, settings, batch):
    """Per pipeline stage: parameter, gradient, optimizer-state, activation and KV-cache bytes on one device, as
    the run mode needs them. Training keeps gradients and two moments of the trainable parameters (all of them, or
    the adapters under pet_config); predict and eval keep the weights, a forward pass and (use_past) the KV cache."""
    layouts = parameter_splits(network)
    stages = settings.pipeline_stage
    inference = config.get("run_mode") in INFERENCE_MODES
    shards, threshold, accumulation_sharded = (1, 0, True) if inference else optimizer_sharding(config, settings)
    grads_full = accumulates_gradients(config, settings) and not accumulation_sharded
    rows = [dict(params=0, grads=0, optimizer=0, activations=0, kv_cache=0, count=0) for _ in range(stages)]
    weights = []
    for param in network.get_parameters():
        split = layouts.get(param.name, {})
        shape = local_shape(param.shape, split, settings)
        numel = math.prod(shape)
        size = BYTES[str(param.dtype).lower()] if str(param.dtype).lower() in BYTES else param.itemsize
        stage = stage_of(param.name, mc.num_layers, stages)
        # The parallel optimizer cuts a weight over the ranks holding it whole: for experts, the dp / ep ranks
        # holding the same experts.
        over = min(shards, settings.data_parallel // settings.expert_parallel) if EXPERT_AXIS in split else shards
        cut = over if over > 1 and numel * size >= threshold and shape and shape[0] % over == 0 else 1
        row = rows[stage]
        row["count"] += numel
        row["params"] += numel * size / cut
        if not inference and param.requires_grad:
            row["grads"] += numel * size / (1 if grads_full else cut)
            row["optimizer"] += ADAM_MOMENTS * numel * moment_bytes(config, size) / cut
        weights.append((param.name, list(param.shape), str(param.dtype), split, shape, stage))
    largest_layer = max((sum(math.prod(local_shape(p.shape, layouts.get(p.name, {}), settings)) *
                             p.itemsize for p in network.get_parameters() if f"layers.{i}." in p.name)
                         for i in range(mc.num_layers)), default=0)
    for index, row in enumerate(rows):
        on_stage = sum(1 for i in range(mc.num_layers) if layer_stage(i, mc.num_layers, stages) == index)
        last = index == stages - 1
        if inference:
            row["activations"] = inference_activation_bytes(mc, settings, batch, last)
            row["kv_cache"] = kv_cache_bytes(mc, settings, batch, on_stage)
        else:
            row["activations"] = activation_bytes(config, mc, settings, batch, on_stage, last)
            if shards > 1:  # the sharded weights of the layer being computed, gathered whole for a moment
                row["activations"] += largest_layer
        row["total"] = sum(row[key] for key in ("params", "grads", "optimizer", "activations", "kv_cache"))
    return rows, weights


def describe_split(splits):
    """'-' (replicated), '1' (model-parallel dim 1) or 'experts 0, 1' (experts along dim 0, features along dim 1)."""
    if not splits:
        return "-"
    model = splits.get(MODEL_AXIS)
    if EXPERT_AXIS not in splits:
        return str(model)
    return f"experts {splits[EXPERT_AXIS]}" + ("" if model is None else f", {model}")


def describe_experts(mc, settings):
    """', 8 experts (2 per token, ffn 14336, capacity_factor 1.1), 1 per device' for a mixture of experts."""
    moe = mc.moe
    if not moe:
        return ""
    capacity = "dropless" if moe.capacity_factor <= 0 else f"capacity_factor {moe.capacity_factor:g}"
    return (f", {moe.expert_num} experts ({moe.top_k} per token, ffn {mc.expert_ffn_size}, {capacity}) in "
            f"{mc.moe_layers()} layers, {moe.expert_num // settings.expert_parallel} per device")


def report(config, mc, settings, batch, rows, weights, budget, show_layouts=True):
    lines = [f"dry run: {config.config_path or 'config'}",
             f"mesh: {settings.describe()} -> {settings.device_num} devices; micro_batch_num "
             f"{settings.micro_batch_num}; optimizer_shard {settings.optimizer_shard}",
             f"model: {mc.num_layers} layers, hidden {mc.hidden_size}, heads {mc.num_heads}/{mc.kv_heads} kv, ffn "
             f"{mc.ffn_size}, vocab {mc.vocab_size}, seq {mc.seq_length}{describe_experts(mc, settings)}; "
             f"param_init_type {mc.param_init_type}, "
             f"compute_dtype {mc.compute_dtype}, flash attention {bool(mc.use_flash_attention)}, recompute "
             f"{(config.get('recompute_config') or {}).get('recompute')}",
             f"run mode {config.get('run_mode') or 'train'}; batch per data-parallel rank: {batch}; optimizer "
             f"{(config.get('optimizer') or {}).get('type', 'AdamW')}"]
    if show_layouts:
        lines.append("weights (name | global shape | dtype | split dims (model_parallel, experts: expert_parallel) | "
                     "per-device shape | stage):")
        lines += [f"  {n} | {tuple(g)} | {d} | {describe_split(s)} | {tuple(l)} | {st}"
                  for n, g, d, s, l, st in weights]
    lines.append("per-device memory (GiB), by pipeline stage:")
    lines.append("  stage  params(M)  params  grads  optimizer  activations  kv_cache  total")
    for index, row in enumerate(rows):
        lines.append(f"  {index:5d}  {row['count'] / 1e6:9.1f}  {row['params'] / GB:6.2f}  {row['grads'] / GB:5.2f}"
                     f"  {row['optimizer'] / GB:9.2f}  {row['activations'] / GB:11.2f}  {row['kv_cache'] / GB:8.2f}"
                     f"  {row['total'] / GB:5.2f}")
    peak = max(row["total"] for row in rows)
    verdict = "fits" if peak <= budget else "does NOT fit"
    lines.append(f"peak {peak / GB:.2f} GiB per device {verdict} in {budget / GB:.2f} GiB (framework workspace, "
                 "communication buffers and fragmentation not counted)")
    return "\n".join(lines), peak


def inference_batch(config, mc):
    """Prompts per generate call: --predict_batch_size, else model_config.batch_size (MindFormers' predict batch)."""
    return int(config.get("predict_batch_size") or config.get("evaluation_batch_size") or mc.batch_size or 1)


def run_dry_run(config, device_num=None, device_memory=None, show_layouts=True):
    settings = mesh_for(parallel_settings(config), device_num)
    memory = device_memory or (config.get("context") or {}).get("max_device_memory") or "64GB"
    budget = parse_memory(memory, "--device_memory" if device_memory else "context.max_device_memory")
    mc, network = build_structure(config)
    check_model_split(settings, mc)
    check_expert_split(settings, mc)
    check_pipeline(settings, mc)
    batch = inference_batch(config, mc) if config.get("run_mode") in INFERENCE_MODES else \
        rank_batch_size(config, settings)
    rows, weights = estimate(config, mc, network, settings, batch)
    text, _ = report(config, mc, settings, batch, rows, weights, budget, show_layouts)
    print(text, flush=True)
    return 0
