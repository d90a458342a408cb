"""A MindSpore .ckpt loaded in one pass that also verifies it.

Verifying first and then loading with ms.load_checkpoint reads the file twice, and ms.load_checkpoint holds the
whole file as one protobuf message beside the tensors it makes from it. Here the file is read front to back once:
every byte goes through its integrity.IntegrityCheck as it is read, and each tensor's bytes land straight in the
numpy array its Tensor then shares. Nothing is returned before the check has passed, and a file that is both
damaged and unparsable (a truncated one) is reported as damaged, as verifying it first would have said.
"""
import math

import numpy as np
import mindspore as ms

from mindformers.checkpoint.ckpt_stream import ProtobufReader, data_end, walk_values
from mindformers.checkpoint.integrity import IntegrityCheck
from mindformers.checkpoint.tensor_dtypes import FROM_CKPT_TYPE, ITEMSIZE, NUMPY, cast
from mindformers.tools.errors import ConfigError


class NotReadHere(Exception):
    """The file holds a value this reader does not build (a map tensor, a dtype numpy cannot hold)."""


def as_tensor(array, dtype):
    """A Tensor of a numpy array in canonical dtype `dtype`, sharing its memory (bfloat16, which numpy holds as
    bit patterns, is converted)."""
    if dtype == "BF16":
        return ms.Tensor(cast(array, "BF16", "F32"), ms.bfloat16)
    return ms.Tensor.from_numpy(array)


class _Filling:
    """One tensor's array, filled slice after slice (consecutive values sharing a name are one tensor)."""

    def __init__(self, path, name, shape, dtype, room):
        self.path, self.name, self.shape, self.dtype = path, name, tuple(shape), dtype
        if math.prod(self.shape) * ITEMSIZE[dtype] > room:  # damaged dims must not allocate what no file holds
            raise self.short()
        self.array = np.empty(self.shape, dtype=NUMPY[dtype])
        self.filled = 0  # bytes

    def fill(self, reader, size):
        view = memoryview(self.array.reshape(-1)).cast("B")
        if self.filled + size > len(view):
            raise ConfigError(f"{self.path}: tensor '{self.name}' holds more bytes than its shape "
                              f"{list(self.shape)} needs")
        reader.take_into(view[self.filled:self.filled + size])
        self.filled += size

    def short(self):
        return ConfigError(f"{self.path}: tensor '{self.name}' holds fewer bytes than its shape {list(self.shape)} "
                           "needs")

    def tensor(self):
        if self.filled != self.array.nbytes:
            raise self.short()
        return as_tensor(self.array, self.dtype)


def _read_values(reader, end):
    """{name: Tensor or str} of every value before byte `end`."""
    filling, strings = {}, {}
    for name, dims, type_name, size in walk_values(reader, end):
        if type_name == "str":  # ms.load_checkpoint's form of a string value: UTF-32
            strings[name] = str(np.frombuffer(reader.take(size), f"U{size // 4}")[0]) if size else ""
            continue
        dtype = FROM_CKPT_TYPE.get(type_name)
        if dtype not in ITEMSIZE:
            raise NotReadHere(f"'{name}' is of type {type_name}")
        if name not in filling:
            filling[name] = _Filling(reader.path, name, dims, dtype, room=end - reader.tell())
        filling[name].fill(reader, size)
    if not filling and not strings:
        raise ConfigError(f"{reader.path}: holds no values")
    return {**strings, **{name: tensor.tensor() for name, tensor in filling.items()}}


def _check_to_end(check, handle):
    """Feed `check` the rest of the file and finish it (raising DamagedCheckpoint); nothing without a check."""
    if check is not None:
        check.update_to_end(handle)
        check.finish()


def load_ckpt(path, key="load_checkpoint", verified=False):
    """{name: Tensor (or str)} of a .ckpt, the values ms.load_checkpoint gives, verified in the same pass (unless
    `verified`: it was moments ago). Damaged bytes raise DamagedCheckpoint; a file that verifies (or cannot be
    verified) but does not parse, ConfigError; one that verifies but holds a value not built here, NotReadHere."""
    check = None if verified else IntegrityCheck(path, key)
    with open(path, "rb") as handle:
        reader = ProtobufReader(handle, path, seen=check.update if check is not None else None)
        try:
            values = _read_values(reader, data_end(path))
        except (ConfigError, NotReadHere, UnicodeDecodeError) as error:
            _check_to_end(check, handle)  # damage comes first: it is why a damaged file does not parse
            if isinstance(error, NotReadHere):
                raise
            reason = error if isinstance(error, ConfigError) else f"{path}: a name is not UTF-8"
            raise ConfigError(f"{key}: cannot read checkpoint {reason}") from None
        _check_to_end(check, handle)
    return values
