"""Weights of a HuggingFace folder or a llama.cpp .gguf file loaded straight into a built network, converted on the
fly one tensor at a time (memory: the network plus one tensor), for from_pretrained and --load_checkpoint."""
import os

import numpy as np
import mindspore as ms

from mindformers.checkpoint.gguf_file import is_gguf
from mindformers.checkpoint.hf_convert import check_against_plan, is_hf_folder, read_hf_source
from mindformers.checkpoint.hf_mapping import family_for_model_type, our_sources
from mindformers.checkpoint.tensor_dtypes import cast
from mindformers.tools.errors import ConfigError


def is_hf_source(path):
    path = os.path.expanduser(str(path))
    return is_gguf(path) or (os.path.isdir(path) and is_hf_folder(path))


def load_hf_weights(network, model_config, path, key="load_checkpoint"):
    """Every weight `model_config`'s family maps, read from the HF folder or GGUF at `path` and set on `network`;
    a missing tensor or another shape is one line naming it."""
    family = family_for_model_type(model_config.model_type)
    _, tensors, _ = read_hf_source(family, path, key=key)
    plan = family.plan(model_config)
    check_against_plan(plan, tensors, path, "hf_to_ours")
    params = {p.name: p for p in network.get_parameters()}
    for planned in plan:
        param = params.get(planned.ours)
        if param is None:
            raise ConfigError(f"{key}: the model has no parameter '{planned.ours}' for {path}")
        if tuple(param.shape) != tuple(planned.our_shape):  # e.g. a model-parallel shard: reshard a converted file
            raise ConfigError(f"{key}: {path}: '{planned.ours}' is {tuple(planned.our_shape)} there but "
                              f"{tuple(param.shape)} in this model (convert it with convert_weight.py and load it "
                              "with --auto_trans_ckpt True)")
        values = np.concatenate([cast(info.read().reshape(-1), info.dtype, "F32")
                                 for info in our_sources(planned, tensors)])
        param.set_data(ms.Tensor(values.reshape(planned.our_shape), dtype=param.dtype))
    # generation's transposed weight copies must follow; imported here because generation imports the models
    from mindformers.generation.transposed_weights import weights_may_change  # pylint: disable=import-outside-toplevel
    weights_may_change(network)
    return [planned.ours for planned in plan]
