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
from mindformers.parallel.parallel_check import (check_expert_split, check_model_split, check_pipeline,
                                                 parallel_settings, rank_batch_size)
from mindformers.tools.errors import ConfigError

GB = 1024 ** 3
BYTES = {"float32": 4, "fp32": 4, "float16": 2, "fp16": 2, "bfloat16": 2, "bf16": 2}
STRUCTURE_SEQ = 8
ADAM_MOMENTS = 2  # AdamW keeps m and v, in the parameter's dtype (MindSpore AdamWeightDecay clones params)


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
    import mindformers  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import  (registers classes)
    from mindformers.tools.register import MindFormerModuleType, build_from_config  # noqa: E501 pylint: disable=import-outside-toplevel
    from mindformers.models.decoder.config import run_model_arguments  # noqa: E501 pylint: disable=import-outside-toplevel
    model = config.get("model") or {}
    if not model.get("model_config") or not model.get("arch"):
        raise ConfigError("model: expected model.model_config and model.arch sections")
    real = build_from_config(model["model_config"], MindFormerModuleType.CONFIG,
                             default_args=run_model_arguments(config),
                             where="model.model_config")
    short = dict(model["model_config"], seq_length=STRUCTURE_SEQ, max_position_embedding=STRUCTURE_SEQ)
    with shape_only():
        small = build_from_config(short, MindFormerModuleType.CONFIG,
                                  default_args=run_model_arguments(config),
                                  where="model.model_config")
        network = build_from_config(model["arch"], MindFormerModuleType.MODELS, default_args={"config": small},
                                    where="model.arch")
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


def activation_bytes(config, mc, settings, batch, layers_on_stage, last_stage):
    """Activations kept for the backward pass on one device (Megatron-style count, widths from the model config):
    per layer the norm inputs/outputs, q/k/v, the attention output, the MLP's kept tensors (four for a gated MLP)
    and, without flash attention, the softmax scores; a recomputed layer keeps only its input. 1F1B keeps
    min(pp, micro_batch_num) micro-batches in flight on the first stage."""
    t, s, b, h = settings.model_parallel, mc.seq_length, batch, mc.hidden_size
    c = BYTES[mc.compute_dtype.lower()]
    replicated = 4 * h / (t if settings.use_seq_parallel else 1)
    attention = (mc.q_size + 2 * mc.kv_size) / t + mc.q_size / t
    per_layer = c * s * b * (replicated + attention + mc.mlp_activation_width(s * b) / t)
    if not mc.use_flash_attention:
        per_layer += b * (mc.num_heads / t) * s * s * (BYTES[mc.softmax_compute_type.lower()] + c)
    layer_input = c * s * b * h
    recomputed = recomputed_layers(config, layers_on_stage)
    kept = recomputed * layer_input + (layers_on_stage - recomputed) * per_layer
    working = per_layer if recomputed else 0  # the layer being recomputed during backward
    in_flight = min(settings.pipeline_stage, settings.micro_batch_num) if settings.pipeline_stage > 1 else 1
    head = s * b * mc.vocab_size / t * (c + 8) if last_stage else 0  # logits + float32 loss copy and its grad
    return in_flight * kept + working + head


def estimate(config, mc, network, settings, batch):
    """Per pipeline stage: parameter, gradient, optimizer-state and activation bytes on one device."""
    layouts = parameter_splits(network)
    stages = settings.pipeline_stage
    rows = [dict(params=0, grads=0, optimizer=0, activations=0, count=0) for _ in range(stages)]
    weights = []
    for param in network.get_parameters():
        split = layouts.get(param.name, {})
        shape = local_shape(param.shape, split, settings)
        numel = math.prod(shape)
        size = BYTES[str(param.dtype).lower()] if str(param.dtype).lower() in BYTES else param.itemsize
        stage = stage_of(param.name, mc.num_layers, stages)
        row = rows[stage]
        row["count"] += numel
        row["params"] += numel * size
        row["grads"] += numel * size
        # Optimizer sharding splits the moments over a weight's replicas: for experts, the dp / ep ranks holding them.
        replicas = settings.data_parallel // (settings.expert_parallel if EXPERT_AXIS in split else 1)
        row["optimizer"] += ADAM_MOMENTS * numel * size / (replicas if settings.optimizer_shard else 1)
        weights.append((param.name, list(param.shape), str(param.dtype), split, shape, stage))
    for index, row in enumerate(rows):
        on_stage = sum(1 for i in range(mc.num_layers) if layer_stage(i, mc.num_layers, stages) == index)
        row["activations"] = activation_bytes(config, mc, settings, batch, on_stage, index == stages - 1)
        row["total"] = row["params"] + row["grads"] + row["optimizer"] + row["activations"]
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
             f"batch per data-parallel rank: {batch}"]
    if show_layouts:
        lines.append("weights (name | global shape | dtype | split dims (model_parallel, experts: expert_parallel) | "
                     "per-device shape | stage):")
        lines += [f"  {n} | {tuple(g)} | {d} | {describe_split(s)} | {tuple(l)} | {st}"
                  for n, g, d, s, l, st in weights]
    lines.append("per-device memory (GiB), by pipeline stage:")
    lines.append("  stage  params(M)  params  grads  optimizer  activations  total")
    for index, row in enumerate(rows):
        lines.append(f"  {index:5d}  {row['count'] / 1e6:9.1f}  {row['params'] / GB:6.2f}  {row['grads'] / GB:5.2f}"
                     f"  {row['optimizer'] / GB:9.2f}  {row['activations'] / GB:11.2f}  {row['total'] / GB:5.2f}")
    peak = max(row["total"] for row in rows)
    verdict = "fits" if peak <= budget else "does NOT fit"
    lines.append(f"peak {peak / GB:.2f} GiB per device {verdict} in {budget / GB:.2f} GiB (framework workspace, "
                 "communication buffers and fragmentation not counted)")
    return "\n".join(lines), peak


def run_dry_run(config, device_num=None, device_memory=None, show_layouts=True):
    settings = mesh_for(parallel_settings(config), device_num)
    memory = device_memory or (config.get("context") or {}).get("max_device_memory") or "64GB"
    budget = parse_memory(memory, "--device_memory" if device_memory else "context.max_device_memory")
    mc, network = build_structure(config)
    check_model_split(settings, mc)
    check_expert_split(settings, mc)
    check_pipeline(settings, mc)
    batch = rank_batch_size(config, settings)
    rows, weights = estimate(config, mc, network, settings, batch)
    text, _ = report(config, mc, settings, batch, rows, weights, budget, show_layouts)
    print(text, flush=True)
    return 0
