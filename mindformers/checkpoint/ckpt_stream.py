"""MindSpore .ckpt files written and indexed tensor by tensor.

A .ckpt is the protobuf message `Checkpoint { repeated Value value = 1; }` with
`Value { string tag = 1; TensorProto tensor = 2; }` and
`TensorProto { repeated int64 dims = 1; string tensor_type = 2; bytes tensor_content = 3; }`.
Serialized protobuf messages concatenate, and mindspore.load_checkpoint joins consecutive values sharing a tag,
so a tensor can be written as several slices as its data streams in, and read back by seeking to the byte
ranges the index records, without ever holding the whole file (mindspore.save_checkpoint needs every tensor in
memory at once; ms.load_checkpoint reads the whole file).
"""
import binascii
import hashlib
import os

from mindformers.checkpoint.integrity import CRC_TRAILER, write_manifest
from mindformers.checkpoint.tensor_dtypes import CKPT_TYPE, FROM_CKPT_TYPE, ITEMSIZE
from mindformers.checkpoint.tensor_store import TensorInfo
from mindformers.tools.errors import ConfigError

SLICE_BYTES = 256 << 20  # below protobuf's 2 GB message limit, like MindSpore's own 512 MB slices


def _varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number, payload):
    """A length-delimited field (wire type 2) of `payload` bytes; returns only its key and length."""
    return _varint(number << 3 | 2) + _varint(len(payload) if isinstance(payload, (bytes, bytearray)) else payload)


class CkptWriter:
    """Streams tensors into a .ckpt; `finish` makes it verifiable like a training save (MindSpore's CRC32 trailer
    and the sha256 manifest, see integrity.py)."""

    def __init__(self, path):
        self.handle = open(path, "wb")  # pylint: disable=consider-using-with
        self.crc = 0
        self.sha256 = hashlib.sha256()

    def _write(self, data):
        self.handle.write(data)
        self.crc = binascii.crc32(data, self.crc)
        self.sha256.update(data)

    def write_tensor(self, name, dtype, shape, chunks):
        """Append one tensor from an iterator of flat numpy chunks, one protobuf Value per slice."""
        dims = b"".join(_varint(int(d)) for d in shape)
        head = _field(1, name.encode("utf-8")) + name.encode("utf-8")
        dims_field = _field(1, dims) + dims if shape else b""
        type_name = CKPT_TYPE[dtype].encode("ascii")
        type_field = _field(2, type_name) + type_name
        pending, pending_bytes = [], 0
        for chunk in chunks:
            pending.append(chunk)
            pending_bytes += chunk.nbytes
            if pending_bytes >= SLICE_BYTES:
                self._slice(head, dims_field, type_field, pending, pending_bytes)
                pending, pending_bytes = [], 0
        if pending or pending_bytes == 0:
            self._slice(head, dims_field, type_field, pending, pending_bytes)

    def _slice(self, head, dims_field, type_field, parts, nbytes):
        tensor_len = len(dims_field) + len(type_field) + len(_field(3, nbytes)) + nbytes
        tensor_key = _field(2, tensor_len)
        value_len = len(head) + len(tensor_key) + tensor_len
        self._write(_field(1, value_len) + head + tensor_key + dims_field + type_field + _field(3, nbytes))
        for part in parts:
            self._write(memoryview(part).cast("B"))

    def finish(self, final_path):
        """Complete a file whose every tensor is written: the CRC32 trailer, synced to disk, then the manifest
        `<final_path>.sha256` (the name the file gets when it is moved into place)."""
        trailer = b"crc_num" + self.crc.to_bytes(10, "big")
        self.handle.write(trailer)
        self.sha256.update(trailer)
        self.handle.flush()
        os.fsync(self.handle.fileno())
        write_manifest(final_path, digest=self.sha256.hexdigest())

    def close(self):
        self.handle.close()


class _Cursor:
    """Reads protobuf keys and varints from a file, seeking over payloads it does not need."""

    def __init__(self, handle, path):
        self.handle, self.path = handle, path

    def varint(self):
        result, shift = 0, 0
        while True:
            byte = self.handle.read(1)
            if not byte:
                raise ConfigError(f"{self.path}: truncated checkpoint file (ends inside a record)")
            result |= (byte[0] & 0x7F) << shift
            if byte[0] < 0x80:
                return result
            shift += 7

    def take(self, size):
        data = self.handle.read(size)
        if len(data) != size:
            raise ConfigError(f"{self.path}: truncated checkpoint file (ends inside a record)")
        return data

    def tell(self):
        return self.handle.tell()

    def skip(self, size):
        self.handle.seek(size, os.SEEK_CUR)

    def skip_field(self, wire_type):
        if wire_type == 0:
            self.varint()
        elif wire_type == 2:
            self.skip(self.varint())
        elif wire_type in (1, 5):
            self.skip(8 if wire_type == 1 else 4)
        else:
            raise ConfigError(f"{self.path}: not a MindSpore checkpoint (unexpected protobuf wire type)")


def _read_tensor_proto(cursor, end):
    dims, dtype, content = [], None, None
    while cursor.tell() < end:
        key = cursor.varint()
        number, wire = key >> 3, key & 7
        if number == 1 and wire == 2:  # packed dims
            stop = cursor.varint() + cursor.tell()
            while cursor.tell() < stop:
                dims.append(cursor.varint())
        elif number == 1 and wire == 0:
            dims.append(cursor.varint())
        elif number == 2 and wire == 2:
            dtype = cursor.take(cursor.varint()).decode("utf-8")
        elif number == 3 and wire == 2:
            size = cursor.varint()
            content = (cursor.tell(), size)
            cursor.skip(size)
        else:
            cursor.skip_field(wire)
    return dims, dtype, content


def read_ckpt(path):
    """name -> TensorInfo for every numeric tensor in a .ckpt (strings and map tensors are skipped)."""
    size = os.path.getsize(path)
    tensors = {}
    with open(path, "rb") as handle:
        cursor = _Cursor(handle, path)
        while cursor.tell() < size:
            start = cursor.tell()
            if size - start == CRC_TRAILER and handle.read(7) == b"crc_num":
                break
            handle.seek(start)
            if cursor.varint() != (1 << 3 | 2):
                raise ConfigError(f"{path}: not a MindSpore checkpoint (unexpected data at byte {start})")
            end = cursor.varint() + cursor.tell()
            if end > size:
                raise ConfigError(f"{path}: truncated checkpoint file (a record needs {end} bytes, file has {size})")
            name, tensor = None, None
            while cursor.tell() < end:
                key = cursor.varint()
                if key == (1 << 3 | 2):
                    name = cursor.take(cursor.varint()).decode("utf-8")
                elif key == (2 << 3 | 2):
                    stop = cursor.varint() + cursor.tell()
                    tensor = _read_tensor_proto(cursor, stop)
                else:
                    cursor.skip_field(key & 7)
            handle.seek(end)
            _add_slice(tensors, path, name, tensor)
    for info in tensors.values():
        if sum(seg[2] for seg in info.segments) != info.nbytes:
            raise ConfigError(f"{path}: tensor '{info.name}' holds fewer bytes than its shape {info.shape} needs")
    return tensors


def _add_slice(tensors, path, name, tensor):
    if name is None or tensor is None or tensor[1] not in FROM_CKPT_TYPE or tensor[2] is None:
        return
    dims, type_name, (offset, nbytes) = tensor
    dtype = FROM_CKPT_TYPE[type_name]
    if dtype not in ITEMSIZE:
        return
    shape = [] if dims == [0] else dims
    if name in tensors:
        tensors[name].segments.append((path, offset, nbytes))
    else:
        tensors[name] = TensorInfo(name, dtype, shape, segments=[(path, offset, nbytes)])
