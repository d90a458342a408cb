"""Streaming conversion between HuggingFace folders and this project's checkpoints, driven by an HFFamily.

Both directions first check every tensor's presence and shape against the family's plan (reading headers
only), then stream data a chunk at a time into a temporary output that is renamed into place when complete,
so a failure leaves nothing behind and memory stays at a few chunks whatever the model size.
"""
import json
import logging
import os

import numpy as np
import yaml

from mindformers.checkpoint.atomic import atomic_files, atomic_folder
from mindformers.checkpoint.ckpt_stream import CkptWriter, read_ckpt
from mindformers.checkpoint.hf_mapping import hf_sources, our_sources
from mindformers.checkpoint.integrity import verify_checkpoint, write_manifest
from mindformers.checkpoint.safetensors_stream import (INDEX_NAME, SafetensorsWriter, read_safetensors,
                                                       read_safetensors_folder, write_index)
from mindformers.checkpoint.tensor_dtypes import FLOATS, ITEMSIZE, YAML_NAME, canonical, cast
from mindformers.checkpoint.tensor_store import TensorInfo
from mindformers.checkpoint.torch_bin import bin_files, read_torch_bins
from mindformers.tools.errors import ConfigError
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister

logger = logging.getLogger("mindformers")
HF_CONFIG = "config.json"
DEFAULT_SHARD_BYTES = 5 * 10**9  # transformers' default max_shard_size


# ---------------------------------------------------------------- reading inputs

def is_hf_folder(path):
    return os.path.isfile(os.path.join(path, HF_CONFIG))


def read_hf_config(folder):
    path = os.path.join(folder, HF_CONFIG)
    if not os.path.isfile(path):
        raise ConfigError(f"--input_path: {folder} has no config.json (expected a HuggingFace model folder)")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except ValueError as error:
        raise ConfigError(f"{path}: not valid JSON ({error})") from None


def read_hf_tensors(folder):
    """Tensors of a HF folder: safetensors (single or sharded) first, else pytorch_model.bin (needs torch)."""
    tensors = read_safetensors_folder(folder)
    if tensors is not None:
        return tensors
    files = bin_files(folder)
    if files:
        return read_torch_bins(files)
    raise ConfigError(f"--input_path: {folder} has no model.safetensors, {INDEX_NAME} or pytorch_model.bin")


def read_our_checkpoint(path, key="--input_path"):
    """name -> TensorInfo of one of our checkpoint files, verified first (integrity.verify_checkpoint)."""
    verify_checkpoint(path, key)
    if path.endswith(".safetensors"):
        return read_safetensors(path)
    return read_ckpt(path)


def our_config_path(checkpoint_path):
    """The YAML convert_weight/save_pretrained writes beside a checkpoint: same name, .yaml suffix."""
    return os.path.splitext(checkpoint_path)[0] + ".yaml"


def build_our_config(family, kwargs, where):
    config_class = MindFormerRegister.get_cls(MindFormerModuleType.CONFIG, family.our_config_type, where=where)
    try:
        return config_class(**kwargs)
    except TypeError as error:
        raise ConfigError(f"{where}: {error}") from None


def config_from_hf(family, hf, where, dtype=None, overrides=None):
    """(our config, weights dtype) for a HF config dict read with `family`."""
    model_type = hf.get("model_type")
    if model_type not in family.model_types:
        raise ConfigError(f"{where}: model_type is {model_type!r}, but the '{family.name}' conversion reads "
                          f"{', '.join(family.model_types)}")
    dtype = canonical(dtype) or canonical(hf.get("dtype") or hf.get("torch_dtype") or "float32", key=where)
    kwargs = family.config_from_hf(hf, dtype, where)
    kwargs.update(overrides or {})
    return build_our_config(family, kwargs, where), dtype


def config_from_hf_folder(family, folder, dtype=None, overrides=None):
    """(our config, weights dtype) for a HF folder read with `family`."""
    return config_from_hf(family, read_hf_config(folder), os.path.join(folder, HF_CONFIG), dtype, overrides)


def read_hf_source(family, input_path, dtype=None, overrides=None, key="--input_path"):
    """(our config, HF-named tensors, GGUFModel or None) of a HF folder or a llama.cpp .gguf file."""
    from mindformers.checkpoint.gguf_file import GGUFModel, is_gguf  # pylint: disable=import-outside-toplevel
    if is_gguf(input_path):
        gguf = GGUFModel(input_path)
        config, _ = config_from_hf(family, gguf.hf_config, input_path, dtype, overrides)
        return config, gguf.tensors, gguf
    if not os.path.isdir(input_path):
        raise ConfigError(f"{key}: expected a HuggingFace model folder or a .gguf file, got {input_path}")
    config, _ = config_from_hf_folder(family, input_path, dtype, overrides)
    return config, family.read_names(read_hf_tensors(input_path)), None


def load_our_yaml(path, overrides=None):
    """(config class name, config kwargs, arch name) from a YAML holding model.model_config (any run config)."""
    from mindformers.tools.register import MindFormerConfig  # pylint: disable=import-outside-toplevel
    tree = MindFormerConfig(path).to_dict()
    model = tree.get("model") or {}
    section = dict(model.get("model_config") or {})
    if not section:
        raise ConfigError(f"{path}: expected a model.model_config section")
    config_type = section.pop("type", None)
    section.update(overrides or {})
    return config_type, section, (model.get("arch") or {}).get("type")


# What a checkpoint's model is: written whatever their value (even equal to the class defaults), so the YAML used as
# a base_config reproduces the model whatever the other bases say. n_kv_heads, head_dim and intermediate_size are
# written as the numbers they resolve to.
MODEL_KEYS = ("seq_length", "max_position_embedding", "hidden_size", "num_layers", "num_heads", "n_kv_heads",
              "head_dim", "intermediate_size", "vocab_size", "hidden_act", "theta", "partial_rotary_factor",
              "scaling_factor", "extend_method", "rms_norm_eps", "add_rmsnorm_offset", "scale_embedding",
              "tie_word_embeddings", "final_logit_softcapping", "qkv_has_bias", "attn_proj_has_bias", "qkv_concat",
              "sliding_window", "position_embedding_type", "rotary_interleaved", "normalization",
              "layer_norm_epsilon", "embedding_norm", "gated_mlp", "mlp_has_bias", "norm_head", "bos_token_id",
              "eos_token_id", "pad_token_id", "compute_dtype", "param_init_type")


def model_keys(config):
    """MODEL_KEYS, resolved, plus every other key that differs from the config class's defaults."""
    values = config.to_dict()
    defaults = type(config)().to_dict()
    keys = {key: values[key] for key in MODEL_KEYS if key in values}
    keys["n_kv_heads"], keys["intermediate_size"] = config.kv_heads, config.ffn_size
    if "head_dim" in keys:
        keys["head_dim"] = config.size_per_head
    keys.update({key: value for key, value in values.items() if key not in keys and value != defaults.get(key)})
    return keys


def write_our_yaml(path, family, config, source, tokenizer=None):
    """The model config (model_keys) and, when given, the processor.tokenizer section."""
    document = {"model": {"model_config": {"type": family.our_config_type, **model_keys(config)},
                          "arch": {"type": family.our_arch_type}}}
    if tokenizer:
        document["processor"] = {"tokenizer": tokenizer}
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"# The model of the checkpoint beside this file (converted from {source}).\n"
                     "# Usable as a base_config of a run config: every id and size is spelled out.\n")
        yaml.safe_dump(document, handle, sort_keys=False, allow_unicode=True)


# ---------------------------------------------------------------- checking

def check_against_plan(plan, tensors, source, direction):
    """Every planned tensor present with its planned shape; returns the names the plan does not use."""
    used = set()
    for planned in plan:
        if direction == "hf_to_ours":
            wanted = [(part.hf_name, part.shape) for part in planned.parts]
        else:
            wanted = [(planned.ours, planned.our_shape)]
        for name, shape in wanted:
            info = tensors.get(name)
            if info is None:
                raise ConfigError(f"{source}: missing tensor '{name}' (expected shape {shape})")
            if info.shape != tuple(shape):
                raise ConfigError(f"{source}: tensor '{name}' has shape {info.shape}, expected {tuple(shape)}")
            if info.dtype not in FLOATS:
                raise ConfigError(f"{source}: tensor '{name}' has dtype {info.dtype}, expected a float type")
            used.add(name)
    return sorted(set(tensors) - used)


def progress_bar(total, desc, enabled=True):
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    # disable=None: a bar on a terminal, nothing in logs or pipes.
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=None if enabled else True)


def cast_chunks(parts, dtype):
    for info in parts:
        for chunk in info.chunks():
            yield cast(chunk, info.dtype, dtype)


def counted(chunks, bar):
    for chunk in chunks:
        bar.update(chunk.nbytes)
        yield chunk


# ---------------------------------------------------------------- HF -> ours

def tokenizer_folder(output_path):
    return os.path.splitext(output_path)[0] + "_tokenizer"


def write_gguf_tokenizer(gguf, folder):
    """The GGUF's tokenizer as HF files in `folder` (written to a temporary name, renamed when complete); returns
    the processor.tokenizer section that reads it."""
    from mindformers.checkpoint.gguf_tokenizer import write_tokenizer_files  # pylint: disable=import-outside-toplevel
    with atomic_folder(folder) as tmp_folder:
        settings = write_tokenizer_files(gguf.metadata, tmp_folder, gguf.path)
    section = {"type": "LlamaTokenizerFast", "tokenizer_file": os.path.join(os.path.abspath(folder), "tokenizer.json")}
    section.update({key: value for key, value in settings.items() if key != "chat_template" and value is not None})
    return section


def hf_to_ours(family, input_path, output_path, dtype=None, progress=True):
    """Convert a HF folder or a .gguf file to a .ckpt (or .safetensors) of ours plus its YAML (and, for GGUF, the
    tokenizer files in <output>_tokenizer/); returns a summary dict."""
    config, tensors, gguf = read_hf_source(family, input_path, dtype)
    plan = family.plan(config)
    unused = check_against_plan(plan, tensors, input_path, "hf_to_ours")
    unused = [name for name in unused if not family.is_buffer(name, config)]
    if unused:
        logger.warning("%s: %d tensors have no place in the model and are skipped (first: %s)",
                       input_path, len(unused), unused[0])
    out_dtype = {p.ours: canonical(dtype) or tensors[p.parts[0].hf_name].dtype for p in plan}
    sources = {p.ours: our_sources(p, tensors) for p in plan}
    total = sum(info.nbytes for parts in sources.values() for info in parts)
    yaml_path = our_config_path(output_path)
    outputs = [output_path, yaml_path, tokenizer_folder(output_path)]
    with atomic_files(*outputs[:2]) as (tmp_out, tmp_yaml), progress_bar(total, "convert", progress) as bar:
        if output_path.endswith(".safetensors"):
            writer = SafetensorsWriter(tmp_out, [(p.ours, out_dtype[p.ours], p.our_shape) for p in plan],
                                       metadata={"format": "ms"})
            write = lambda p, chunks: writer.write_tensor(p.ours, chunks)  # noqa: E731
        else:
            writer = CkptWriter(tmp_out)
            write = lambda p, chunks: writer.write_tensor(p.ours, out_dtype[p.ours], p.our_shape, chunks)  # noqa
        try:
            for planned in plan:
                write(planned, counted(cast_chunks(sources[planned.ours], out_dtype[planned.ours]), bar))
            tokenizer = write_gguf_tokenizer(gguf, outputs[2]) if gguf is not None else None
            write_our_yaml(tmp_yaml, family, config, input_path, tokenizer)
            if isinstance(writer, CkptWriter):
                writer.finish(output_path)
        finally:
            writer.close()
        if not isinstance(writer, CkptWriter):
            write_manifest(output_path, data_path=tmp_out)  # last: the checkpoint appears with its manifest
    summary = {"tensors": len(plan), "bytes_in": total, "output": output_path, "config": yaml_path}
    if gguf is not None:
        summary["tokenizer"] = outputs[2]
    return summary


# ---------------------------------------------------------------- ours -> HF

def shard_plan(entries, max_shard_bytes):
    """Split [(hf name, dtype, shape, nbytes)] into consecutive shards of at most max_shard_bytes each."""
    shards, current, size = [], [], 0
    for entry in entries:
        if current and size + entry[3] > max_shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(entry)
        size += entry[3]
    if current or not shards:
        shards.append(current)
    return shards


def ours_to_hf(family, config, tensors, output_dir, source, dtype=None, max_shard_bytes=DEFAULT_SHARD_BYTES,
               progress=True):
    """Write `tensors` (name -> TensorInfo of ours) as a HF folder: config.json, shards and their index."""
    plan = family.plan(config)
    check_against_plan(plan, tensors, source, "ours_to_hf")
    dtype = canonical(dtype)
    hf_parts = []
    for name, piece in hf_sources(plan, tensors):
        out = dtype or piece.dtype
        hf_parts.append((name, out, piece.shape, piece.nbytes * ITEMSIZE[out] // ITEMSIZE[piece.dtype], piece))
    buffer_dtype = dtype or (hf_parts[0][1] if hf_parts else "F32")
    for name, array in family.buffers(config).items():
        piece = TensorInfo(name, "F32", array.shape, load=lambda a=array: a.astype(np.float32))
        hf_parts.append((name, buffer_dtype, piece.shape, piece.nbytes * ITEMSIZE[buffer_dtype] // 4, piece))
    shards = shard_plan(hf_parts, max_shard_bytes)
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {entry[0]: name for name, shard in zip(names, shards) for entry in shard}
    total = sum(entry[3] for entry in hf_parts)
    config_dtype = dtype or hf_parts[0][1]
    hf_config = family.config_to_hf(config, config_dtype)
    with atomic_folder(output_dir) as tmp, progress_bar(total, "convert", progress) as bar:
        for name, shard in zip(names, shards):
            writer = SafetensorsWriter(os.path.join(tmp, name), [entry[:3] for entry in shard],
                                       metadata={"format": "pt"})
            try:
                for hf_name, out, _, _, piece in shard:
                    writer.write_tensor(hf_name, counted(cast_chunks([piece], out), bar))
            finally:
                writer.close()
        write_index(os.path.join(tmp, INDEX_NAME), weight_map, total)
        with open(os.path.join(tmp, HF_CONFIG), "w", encoding="utf-8") as handle:
            json.dump(hf_config, handle, indent=2)
            handle.write("\n")
    return {"tensors": len(hf_parts), "shards": len(shards), "bytes_out": total, "output": output_dir}


def checkpoint_to_hf(family, checkpoint_path, output_dir, config_path=None, dtype=None,
                     max_shard_bytes=DEFAULT_SHARD_BYTES, progress=True, overrides=None):
    """convert_weight --reversed: our checkpoint (+ the YAML beside it, or `config_path`) -> a HF folder."""
    if not os.path.isfile(checkpoint_path):
        raise ConfigError(f"--input_path: checkpoint not found: {checkpoint_path}")
    config_path = config_path or our_config_path(checkpoint_path)
    if not os.path.isfile(config_path):
        raise ConfigError(f"--config: no model config for {checkpoint_path} (expected {config_path}, or pass "
                          "--config with a YAML holding model.model_config)")
    _, kwargs, _ = load_our_yaml(config_path, overrides)
    config = build_our_config(family, kwargs, f"{config_path}: model.model_config")
    tensors = read_our_checkpoint(checkpoint_path)
    return ours_to_hf(family, config, tensors, output_dir, checkpoint_path, dtype, max_shard_bytes, progress)


__all__ = ["hf_to_ours", "checkpoint_to_hf", "ours_to_hf", "read_hf_tensors", "config_from_hf_folder",
           "load_our_yaml", "write_our_yaml", "our_config_path", "is_hf_folder", "YAML_NAME"]
