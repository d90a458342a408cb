"""A tensor known by its header (name, dtype, shape) whose bytes are read only when asked, a chunk at a time.

Every checkpoint reader (safetensors, .ckpt, pytorch_model.bin, a live network) describes its tensors this
way, so conversion can check every name and shape first and then stream data with bounded memory.
"""
import numpy as np

from mindformers.checkpoint.tensor_dtypes import ITEMSIZE, NUMPY

CHUNK_BYTES = 64 << 20  # bounds the memory one tensor costs during conversion, whatever its size


class TensorInfo:
    """`segments` lists (file path, offset, nbytes) holding the row-major bytes; `load` is the alternative
    for sources that can only produce a whole array (torch .bin, a network parameter)."""

    __slots__ = ("name", "dtype", "shape", "segments", "load")

    def __init__(self, name, dtype, shape, segments=None, load=None):
        self.name = name
        self.dtype = dtype
        self.shape = tuple(int(d) for d in shape)
        self.segments = segments
        self.load = load

    @property
    def nbytes(self):
        return int(np.prod(self.shape, dtype=np.int64)) * ITEMSIZE[self.dtype]

    def chunks(self, chunk_bytes=CHUNK_BYTES):
        """Yield flat numpy arrays (in `self.dtype`'s numpy form) that together make up the tensor."""
        if self.load is not None:
            flat = np.ascontiguousarray(self.load()).reshape(-1).view(NUMPY[self.dtype])
            step = max(1, chunk_bytes // ITEMSIZE[self.dtype])
            for start in range(0, flat.size, step):
                yield flat[start:start + step]
            return
        step = max(ITEMSIZE[self.dtype], chunk_bytes - chunk_bytes % ITEMSIZE[self.dtype])
        for path, offset, nbytes in self.segments:
            with open(path, "rb") as handle:
                handle.seek(offset)
                for start in range(0, nbytes, step):
                    size = min(step, nbytes - start)
                    buffer = bytearray(size)
                    if handle.readinto(buffer) != size:
                        raise OSError(f"{path}: file ended inside tensor '{self.name}'")
                    yield np.frombuffer(buffer, dtype=NUMPY[self.dtype])

    def read(self):
        """The whole tensor as one array of its shape, filled chunk by chunk (memory: the tensor and one chunk)."""
        out = np.empty(self.shape, dtype=NUMPY[self.dtype])
        flat, filled = out.reshape(-1), 0
        for chunk in self.chunks():
            flat[filled:filled + chunk.size] = chunk
            filled += chunk.size
        return out
