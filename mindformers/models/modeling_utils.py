"""from_pretrained / save_pretrained for any model whose config class names an HF family (`model_type`).

A model class gets them by listing `PreTrainedMixin` among its bases and having `config_class`; the weight and
config correspondence with HuggingFace comes from the family's declaration (mindformers/checkpoint/hf_mapping.py).
"""
import glob
import os

import numpy as np
import mindspore as ms

from mindformers.checkpoint.atomic import atomic_files
from mindformers.checkpoint.checkpoint_io import load_weights, read_checkpoint
from mindformers.checkpoint.ckpt_stream import CkptWriter
from mindformers.checkpoint.gguf_file import is_gguf
from mindformers.checkpoint.hf_convert import (DEFAULT_SHARD_BYTES, build_our_config, is_hf_folder, load_our_yaml,
                                               our_config_path, ours_to_hf, read_hf_source, write_our_yaml)
from mindformers.checkpoint.hf_weights import load_hf_weights
from mindformers.checkpoint.hf_mapping import family_for_model_type
from mindformers.checkpoint.tensor_dtypes import cast
from mindformers.checkpoint.tensor_store import TensorInfo
from mindformers.tools.errors import ConfigError

WEIGHTS_NAME = "mindspore_model.ckpt"  # save_pretrained's checkpoint; its config is mindspore_model.yaml
_MS_TO_CANONICAL = {ms.float32: "F32", ms.float16: "F16"}


def find_our_checkpoint(folder):
    """(checkpoint, yaml) in a folder of ours: the one checkpoint that has a same-named .yaml beside it."""
    pairs = [path for pattern in ("*.ckpt", "*.safetensors") for path in sorted(glob.glob(os.path.join(folder, pattern)))
             if os.path.isfile(our_config_path(path))]
    if len(pairs) != 1:
        found = ", ".join(os.path.basename(p) for p in pairs) or "none"
        raise ConfigError(f"from_pretrained: {folder}: expected a HF folder (config.json) or exactly one checkpoint "
                          f"with a same-named .yaml beside it (found: {found})")
    return pairs[0], our_config_path(pairs[0])


def parameter_tensors(network):
    """Our tensors of a live network as TensorInfo (bfloat16 travels as its bit pattern, via an exact float32)."""
    tensors = {}
    for param in network.get_parameters():
        if param.dtype in _MS_TO_CANONICAL:
            tensors[param.name] = TensorInfo(param.name, _MS_TO_CANONICAL[param.dtype], param.shape,
                                             load=lambda p=param: p.asnumpy())
        else:
            tensors[param.name] = TensorInfo(param.name, "BF16", param.shape,
                                             load=lambda p=param: cast(p.astype(ms.float32).asnumpy(), "F32", "BF16"))
    return tensors


class PreTrainedMixin:
    """Adds `from_pretrained(path)` and `save_pretrained(path)`; the class must define `config_class`."""

    @classmethod
    def hf_family(cls):
        return family_for_model_type(cls.config_class.model_type)

    @classmethod
    def from_pretrained(cls, path, **config_overrides):
        """A model in eval mode from a HF folder, a llama.cpp .gguf file, a folder of ours (checkpoint + same-named
        YAML), or the path of one of our checkpoints. Keyword arguments override config keys (e.g.
        compute_dtype="float32")."""
        path = os.path.expanduser(str(path))
        if os.path.isdir(path) and is_hf_folder(path) or is_gguf(path):
            model = cls._from_hf_source(path, config_overrides)
        elif os.path.isdir(path) or os.path.isfile(path):
            model = cls._from_our_checkpoint(path, config_overrides)
        else:
            raise ConfigError(f"from_pretrained: not found: {path}")
        model.set_train(False)
        return model

    @classmethod
    def _from_hf_source(cls, path, overrides):
        config, _, _ = read_hf_source(cls.hf_family(), path, overrides=overrides, key="from_pretrained")
        model = cls(config)
        load_hf_weights(model, config, path, key="from_pretrained")
        return model

    @classmethod
    def _from_our_checkpoint(cls, path, overrides):
        if os.path.isdir(path):
            checkpoint, config_path = find_our_checkpoint(path)
        else:
            checkpoint, config_path = path, our_config_path(path)
            if not os.path.isfile(config_path):
                raise ConfigError(f"from_pretrained: no model config beside {path} (expected {config_path})")
        _, kwargs, _ = load_our_yaml(config_path, overrides)
        config = build_our_config(cls.hf_family(), kwargs, f"{config_path}: model.model_config")
        model = cls(config)
        load_weights(model, read_checkpoint(checkpoint, key="from_pretrained"), checkpoint, key="from_pretrained")
        return model

    def save_pretrained(self, path, hf_format=False, dtype=None, max_shard_size=DEFAULT_SHARD_BYTES):
        """Write a folder from_pretrained reads back: ours (mindspore_model.ckpt + .yaml) or, with hf_format,
        HF's (config.json + sharded safetensors) that transformers loads. Returns `path`."""
        family = self.hf_family()
        tensors = parameter_tensors(self)
        if hf_format:
            ours_to_hf(family, self.config, tensors, path, "save_pretrained", dtype, max_shard_size, progress=False)
            return path
        checkpoint = os.path.join(path, WEIGHTS_NAME)
        with atomic_files(checkpoint, our_config_path(checkpoint)) as (tmp_ckpt, tmp_yaml):
            writer = CkptWriter(tmp_ckpt)
            try:
                for info in tensors.values():
                    writer.write_tensor(info.name, info.dtype, info.shape, info.chunks())
                writer.finish(checkpoint)  # CRC32 and the .sha256 manifest, like every checkpoint of ours
            finally:
                writer.close()
            write_our_yaml(tmp_yaml, family, self.config, "save_pretrained")
        return path
