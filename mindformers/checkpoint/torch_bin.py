"""pytorch_model.bin checkpoints (single or sharded), read only where torch is installed.

torch is optional for the library: it is imported here, on demand, and loading uses weights_only=True (no
pickled code runs) and mmap=True (tensors stay on disk until one is asked for).
"""
import json
import os

import numpy as np

from mindformers.checkpoint.tensor_store import TensorInfo
from mindformers.tools.errors import ConfigError

BIN_NAME = "pytorch_model.bin"
BIN_INDEX_NAME = "pytorch_model.bin.index.json"
_TORCH_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64", "int64": "I64",
                 "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


def bin_files(folder):
    index = os.path.join(folder, BIN_INDEX_NAME)
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as handle:
            shards = sorted(set(json.load(handle)["weight_map"].values()))
        return [os.path.join(folder, shard) for shard in shards]
    single = os.path.join(folder, BIN_NAME)
    return [single] if os.path.isfile(single) else []


def _as_numpy(tensor):
    tensor = tensor.contiguous()
    if str(tensor.dtype) == "torch.bfloat16":
        import torch  # pylint: disable=import-outside-toplevel
        return tensor.view(torch.int16).numpy().view(np.uint16)
    return tensor.numpy()


def read_torch_bins(files):
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise ConfigError(f"{files[0]}: reading pytorch_model.bin needs torch, which is not installed "
                          "(convert the folder to safetensors, or pip install torch)") from None
    tensors = {}
    for path in files:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as error:  # pylint: disable=broad-except  (torch raises many kinds for a bad file)
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConfigError(f"{path}: cannot read pytorch checkpoint: {detail}") from None
        for name, tensor in state.items():
            dtype = _TORCH_DTYPES.get(str(tensor.dtype).replace("torch.", ""))
            if dtype is None:
                continue
            tensors[name] = TensorInfo(name, dtype, tuple(tensor.shape), load=lambda t=tensor: _as_numpy(t))
    return tensors
