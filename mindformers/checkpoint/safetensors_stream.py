"""safetensors files read and written tensor by tensor (the format: 8-byte little-endian header length, a JSON
header of name -> dtype/shape/data_offsets, then the raw bytes), single or sharded with an index."""
import json
import os
import struct

from mindformers.checkpoint.tensor_dtypes import ITEMSIZE
from mindformers.checkpoint.tensor_store import TensorInfo
from mindformers.tools.errors import ConfigError

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
MAX_HEADER = 100 << 20  # a larger "header length" means a file that is not safetensors at all


def read_safetensors(path):
    """name -> TensorInfo for one file; a short or malformed file is a one-line error naming it."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ConfigError(f"{path}: truncated safetensors file ({size} bytes, no header)")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > min(MAX_HEADER, size - 8):
            raise ConfigError(f"{path}: truncated or not a safetensors file (header of {header_len} bytes, "
                              f"file of {size})")
        try:
            header = json.loads(handle.read(header_len))
        except ValueError:
            raise ConfigError(f"{path}: not a safetensors file (header is not JSON)") from None
    base = 8 + header_len
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = entry.get("dtype")
        if dtype not in ITEMSIZE:
            raise ConfigError(f"{path}: tensor '{name}' has dtype {dtype}, which conversion does not handle")
        start, end = entry["data_offsets"]
        if base + end > size:
            raise ConfigError(f"{path}: truncated safetensors file: tensor '{name}' needs bytes up to "
                              f"{base + end}, the file has {size}")
        info = TensorInfo(name, dtype, entry["shape"], segments=[(path, base + start, end - start)])
        if info.nbytes != end - start:
            raise ConfigError(f"{path}: tensor '{name}': shape {info.shape} does not fit its {end - start} bytes")
        tensors[name] = info
    return tensors


def read_safetensors_folder(folder):
    """All tensors of a HF folder: model.safetensors, or the shards model.safetensors.index.json names."""
    index_path = os.path.join(folder, INDEX_NAME)
    if os.path.isfile(index_path):
        try:
            with open(index_path, encoding="utf-8") as handle:
                weight_map = json.load(handle)["weight_map"]
        except (ValueError, KeyError):
            raise ConfigError(f"{index_path}: not a safetensors index (expected a 'weight_map' mapping)") from None
        tensors = {}
        for shard in sorted(set(weight_map.values())):
            shard_path = os.path.join(folder, shard)
            if not os.path.isfile(shard_path):
                raise ConfigError(f"{index_path}: names shard {shard}, which is not in {folder}")
            tensors.update(read_safetensors(shard_path))
        return tensors
    single = os.path.join(folder, SINGLE_NAME)
    if os.path.isfile(single):
        return read_safetensors(single)
    return None


class SafetensorsWriter:
    """Writes the header for a known list of tensors, then their bytes in that order, chunk by chunk."""

    def __init__(self, path, entries, metadata=None):
        self.order = [name for name, _, _ in entries]
        header, offset = {}, 0
        if metadata:
            header["__metadata__"] = metadata
        for name, dtype, shape in entries:
            nbytes = TensorInfo(name, dtype, shape).nbytes
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
        encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
        encoded += b" " * (-len(encoded) % 8)  # keep tensor data 8-byte aligned, as the reference writer does
        self.handle = open(path, "wb")  # pylint: disable=consider-using-with
        self.handle.write(struct.pack("<Q", len(encoded)) + encoded)
        self.next = 0

    def write_tensor(self, name, chunks):
        if self.order[self.next] != name:
            raise RuntimeError(f"tensors must be written in header order: expected {self.order[self.next]}")
        for chunk in chunks:
            self.handle.write(memoryview(chunk).cast("B"))
        self.next += 1

    def close(self):
        self.handle.close()


def write_index(path, weight_map, total_size):
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"metadata": {"total_size": total_size}, "weight_map": weight_map}, handle, indent=2)
        handle.write("\n")
