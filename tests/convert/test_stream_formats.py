"""The streaming .ckpt and safetensors readers/writers against MindSpore's and safetensors' own."""
import numpy as np
import mindspore as ms
import pytest

from mindformers.checkpoint import ckpt_stream
from mindformers.checkpoint.ckpt_stream import CkptWriter, read_ckpt
from mindformers.checkpoint.safetensors_stream import SafetensorsWriter, read_safetensors
from mindformers.checkpoint.tensor_dtypes import cast
from mindformers.tools.errors import ConfigError


def test_sliced_ckpt_loads_in_mindspore_and_reads_back(tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt_stream, "SLICE_BYTES", 1000)  # force several protobuf slices per tensor
    a = np.random.default_rng(0).standard_normal((300, 7)).astype(np.float32)
    half = np.arange(5, dtype=np.float16)
    path = str(tmp_path / "t.ckpt")
    writer = CkptWriter(path)
    flat = a.reshape(-1)
    writer.write_tensor("a", "F32", a.shape, [flat[:999], flat[999:]])
    writer.write_tensor("h", "F16", half.shape, [half])
    writer.write_tensor("b", "BF16", a.shape, [cast(flat, "F32", "BF16")])
    writer.close()
    loaded = ms.load_checkpoint(path)
    np.testing.assert_array_equal(loaded["a"].asnumpy(), a)
    np.testing.assert_array_equal(loaded["h"].asnumpy(), half)
    # Our float32 -> bfloat16 rounding is MindSpore's (round to nearest even).
    np.testing.assert_array_equal(loaded["b"].float().asnumpy(), ms.Tensor(a).astype(ms.bfloat16).float().asnumpy())
    tensors = read_ckpt(path)
    assert len(tensors["a"].segments) > 1
    np.testing.assert_array_equal(tensors["a"].read(), a)


def test_reads_mindspore_written_ckpt_with_crc(tmp_path):
    a = np.ones((3, 4), np.float32)
    path = str(tmp_path / "m.ckpt")
    ms.save_checkpoint([{"name": "w", "data": ms.Tensor(a)}], path, crc_check=True)
    np.testing.assert_array_equal(read_ckpt(path)["w"].read(), a)


def test_safetensors_writer_matches_reference_reader(tmp_path):
    safetensors = pytest.importorskip("safetensors.numpy")
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = str(tmp_path / "x.safetensors")
    writer = SafetensorsWriter(path, [("a", "F32", a.shape), ("b", "F16", (2,))])
    writer.write_tensor("a", [a.reshape(-1)[:5], a.reshape(-1)[5:]])
    writer.write_tensor("b", [np.array([1, 2], np.float16)])
    writer.close()
    np.testing.assert_array_equal(safetensors.load_file(path)["a"], a)
    with open(path, "r+b") as handle:
        handle.truncate(40)
    with pytest.raises(ConfigError, match="truncated"):
        read_safetensors(path)


def test_truncated_ckpt_is_a_user_error(tmp_path):
    path = str(tmp_path / "t.ckpt")
    writer = CkptWriter(path)
    writer.write_tensor("a", "F32", (100,), [np.zeros(100, np.float32)])
    writer.close()
    with open(path, "r+b") as handle:
        handle.truncate(200)
    with pytest.raises(ConfigError, match="truncated"):
        read_ckpt(path)
