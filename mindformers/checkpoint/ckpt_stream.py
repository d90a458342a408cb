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

from mindformers.checkpoint.integrity import CRC_TRAILER, crc_trailer, write_manifest
from mindformers.checkpoint.tensor_dtypes import CKPT_TYPE, FROM_CKPT_TYPE, ITEMSIZE
from mindformers.checkpoint.tensor_store import TensorInfo
from mindformers.tools.errors import ConfigError

SLICE_BYTES = 256 << 20  # below protobuf's 2 GB message limit, like MindSpore's own 512 MB slices
_SKIP_CHUNK = 16 << 20


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


MAP_TENSOR = "MapTensor"  # the type walk_values reports for a map tensor's payload (not a TensorProto)


class ProtobufReader:
    """Reads protobuf keys, varints and payloads from a file in order. With `seen`, every byte read is passed to
    it (an integrity check) and skipped payloads are read too; without it they are seeked over."""

    def __init__(self, handle, path, seen=None):
        self.handle, self.path, self.seen = handle, path, seen

    def truncated(self):
        return ConfigError(f"{self.path}: truncated checkpoint file (ends inside a record)")

    def take(self, size):
        data = self.handle.read(size)
        if len(data) != size:
            raise self.truncated()
        if self.seen is not None:
            self.seen(data)
        return data

    def take_into(self, view):
        """Fill the writable byte memoryview `view` from the file."""
        if self.handle.readinto(view) != len(view):
            raise self.truncated()
        if self.seen is not None:
            self.seen(view)

    def skip(self, size):
        if self.seen is None:
            self.handle.seek(size, os.SEEK_CUR)
            return
        while size > 0:
            size -= len(self.take(min(size, _SKIP_CHUNK)))

    def tell(self):
        return self.handle.tell()

    def varint(self):
        result, shift = 0, 0
        while True:
            byte = self.take(1)[0]
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7

    def length(self, end):
        """A length-delimited field's length, checked to fit before byte `end` (its record's end): a damaged length
        must not make the reader ask for more than the file holds."""
        size = self.varint()
        if self.tell() + size > end:
            raise ConfigError(f"{self.path}: not a MindSpore checkpoint (a field overruns its record at byte "
                              f"{self.tell()})")
        return size

    def skip_field(self, wire_type, end):
        if wire_type == 0:
            self.varint()
        elif wire_type == 2:
            self.skip(self.length(end))
        elif wire_type in (1, 5):
            self.skip(8 if wire_type == 1 else 4)
        else:
            raise ConfigError(f"{self.path}: not a MindSpore checkpoint (unexpected protobuf wire type)")


def data_end(path):
    """Where a .ckpt's protobuf values end: before MindSpore's CRC32 trailer when the file has one."""
    size = os.path.getsize(path)
    return size - CRC_TRAILER if crc_trailer(path) is not None else size


def _tensor_proto(reader, end, name):
    dims, type_name = [], None
    while reader.tell() < end:
        key = reader.varint()
        number, wire = key >> 3, key & 7
        if number == 1 and wire == 2:  # packed dims
            stop = reader.length(end) + reader.tell()
            while reader.tell() < stop:
                dims.append(reader.varint())
        elif number == 1 and wire == 0:
            dims.append(reader.varint())
        elif number == 2 and wire == 2:
            type_name = reader.take(reader.length(end)).decode("utf-8")
        elif number == 3 and wire == 2:
            yield name, [] if dims == [0] else dims, type_name, reader.length(end)
        else:
            reader.skip_field(wire, end)


def walk_values(reader, end):
    """Every value of a .ckpt up to byte `end` (data_end): yields (name, dims, type name, size) with the reader at the
    first of the `size` bytes of a tensor's content, which the caller must read or skip before going on (type
    MAP_TENSOR: a map tensor's whole payload). MindSpore writes a TensorProto's content after its dims and type."""
    while reader.tell() < end:
        start = reader.tell()
        if reader.varint() != (1 << 3 | 2):
            raise ConfigError(f"{reader.path}: not a MindSpore checkpoint (unexpected data at byte {start})")
        record_end = reader.varint() + reader.tell()
        if record_end > end:
            raise ConfigError(f"{reader.path}: truncated checkpoint file (a record needs {record_end} bytes, its "
                              f"data ends at {end})")
        name = None
        while reader.tell() < record_end:
            key = reader.varint()
            if key == (1 << 3 | 2):
                name = reader.take(reader.length(record_end)).decode("utf-8")
            elif key == (2 << 3 | 2):
                yield from _tensor_proto(reader, reader.length(record_end) + reader.tell(), name)
            elif key == (3 << 3 | 2):
                yield name, None, MAP_TENSOR, reader.length(record_end)
            else:
                reader.skip_field(key & 7, record_end)
        if reader.tell() != record_end:
            raise ConfigError(f"{reader.path}: not a MindSpore checkpoint (a record overruns its length)")


def read_ckpt(path):
    """name -> TensorInfo for every numeric tensor in a .ckpt (strings and map tensors are skipped)."""
    tensors = {}
    with open(path, "rb") as handle:
        reader = ProtobufReader(handle, path)
        for name, dims, type_name, size in walk_values(reader, data_end(path)):
            _add_slice(tensors, path, name, dims, type_name, (reader.tell(), size))
            reader.skip(size)
    for info in tensors.values():
        if sum(seg[2] for seg in info.segments) != info.nbytes:
            raise ConfigError(f"{path}: tensor '{info.name}' holds fewer bytes than its shape {info.shape} needs")
    return tensors


def _add_slice(tensors, path, name, dims, type_name, content):
    if name is None or type_name not in FROM_CKPT_TYPE:
        return
    dtype = FROM_CKPT_TYPE[type_name]
    if dtype not in ITEMSIZE:
        return
    offset, nbytes = content
    if name in tensors:
        tensors[name].segments.append((path, offset, nbytes))
    else:
        tensors[name] = TensorInfo(name, dtype, dims, segments=[(path, offset, nbytes)])
