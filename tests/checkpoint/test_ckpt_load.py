"""The one-pass .ckpt load (read_checkpoint through ckpt_load.py): the values MindSpore's own reader gives, checked
in the same pass, damaged or truncated files refused by name, and weights loaded into a model without a copy."""
import logging
import os

import mindspore as ms
import numpy as np
import pytest

from mindformers.checkpoint import ckpt_stream, read_checkpoint, save_checkpoint_atomic
from mindformers.checkpoint.checkpoint_io import load_weights
from mindformers.checkpoint.ckpt_load import NotReadHere, load_ckpt
from mindformers.checkpoint.ckpt_stream import CkptWriter
from mindformers.checkpoint.integrity import DamagedCheckpoint
from mindformers.checkpoint.tensor_dtypes import cast
from mindformers.tools.errors import ConfigError

RNG = np.random.default_rng(0)
WEIGHT = RNG.standard_normal((6, 5)).astype(np.float32)
NORM = RNG.standard_normal(5).astype(np.float16)


def training_save(path):
    """What a training run writes: CRC trailer, manifest, counters and a string among the tensors."""
    items = [{"name": "w", "data": ms.Parameter(ms.Tensor(WEIGHT), name="w")},
             {"name": "norm", "data": ms.Parameter(ms.Tensor(NORM), name="norm")}]
    save_checkpoint_atomic(items, str(path), append_dict={"step_num": 7, "loss_scale": 1024.0, "note": "run-é"})
    return str(path)


def same_values(ours, theirs):
    assert sorted(ours) == sorted(theirs)
    for name, value in theirs.items():
        if isinstance(value, str):
            assert ours[name] == value
        else:
            assert ours[name].dtype == value.dtype and ours[name].shape == value.shape, name
            np.testing.assert_array_equal(ours[name].float().asnumpy(), value.float().asnumpy())


def test_a_training_save_loads_as_mindspore_loads_it(tmp_path):
    path = training_save(tmp_path / "run.ckpt")
    loaded = load_ckpt(path)
    same_values(loaded, ms.load_checkpoint(path))
    assert loaded["note"] == "run-é" and loaded["step_num"].asnumpy().item() == 7


def test_sliced_bfloat16_and_scalar_tensors(tmp_path, monkeypatch):
    """A tensor written as several protobuf values sharing its name is one tensor; bfloat16 and 0-d ones too."""
    monkeypatch.setattr(ckpt_stream, "SLICE_BYTES", 40)
    path = str(tmp_path / "sliced.ckpt")
    writer = CkptWriter(path)
    flat = WEIGHT.reshape(-1)
    writer.write_tensor("w", "F32", WEIGHT.shape, [flat[:7], flat[7:19], flat[19:]])
    writer.write_tensor("b", "BF16", WEIGHT.shape, [cast(flat, "F32", "BF16")])
    writer.write_tensor("s", "I64", (), [np.array([3], np.int64)])
    writer.finish(path)
    writer.close()
    loaded = load_ckpt(path)
    same_values(loaded, ms.load_checkpoint(path))
    np.testing.assert_array_equal(loaded["w"].asnumpy(), WEIGHT)


def copy_with_manifest(original, target):
    with open(original, "rb") as source, open(target, "wb") as out:
        out.write(source.read())
    digest = open(f"{original}.sha256", encoding="utf-8").read().split()[0]
    with open(f"{target}.sha256", "w", encoding="utf-8") as stream:
        stream.write(f"{digest}  {os.path.basename(target)}\n")


@pytest.mark.parametrize("with_manifest", [True, False], ids=["manifest", "crc-only"])
def test_a_truncated_file_is_refused_as_damaged_wherever_it_ends(tmp_path, with_manifest):
    """Cut anywhere, a file with a manifest is damaged (its sha256 differs), not merely unparsable: the check sees
    the bytes the parse gave up on. A CRC-only file cut short has lost its trailer: unverifiable, it is unreadable,
    or (cut between two values) holds the values before the cut, as MindSpore's reader would give them."""
    original = training_save(tmp_path / "good.ckpt")
    target = str(tmp_path / "cut.ckpt")
    copy_with_manifest(original, target)
    if not with_manifest:
        os.remove(f"{target}.sha256")
    data = open(original, "rb").read()
    for size in range(0, len(data) - 17, 7):
        with open(target, "wb") as stream:
            stream.write(data[:size])
        if with_manifest:
            with pytest.raises(DamagedCheckpoint, match=r"cut.ckpt: damaged checkpoint \(sha256 differs"):
                read_checkpoint(target)
            continue
        try:
            before_the_cut = read_checkpoint(target)
        except ConfigError as error:
            assert str(error).startswith(f"load_checkpoint: cannot read checkpoint {target}: ")
            assert "\n" not in str(error)
            continue
        whole = load_ckpt(original)
        assert set(before_the_cut) < set(whole)
        same_values(before_the_cut, {name: whole[name] for name in before_the_cut})


def bytes_read():
    with open("/proc/self/io", encoding="ascii") as stream:
        return int(next(line for line in stream if line.startswith("rchar:")).split()[1])


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="counts the bytes read through Linux's /proc")
def test_a_flipped_byte_is_refused_after_reading_the_file_once(tmp_path):
    original = str(tmp_path / "good.ckpt")
    save_checkpoint_atomic([{"name": "big", "data": ms.Tensor(RNG.standard_normal((128, 128)).astype(np.float32))}],
                           original)
    target = str(tmp_path / "bad.ckpt")
    copy_with_manifest(original, target)
    data = bytearray(open(original, "rb").read())
    data[len(data) // 2] ^= 0x10
    with open(target, "wb") as stream:
        stream.write(bytes(data))
    before = bytes_read()
    with pytest.raises(DamagedCheckpoint, match="sha256 differs"):
        load_ckpt(target)
    assert len(data) <= bytes_read() - before < 1.1 * len(data)  # checked as it is read: once


def test_values_not_read_here_fall_back_to_mindspore_after_the_check(tmp_path, caplog):
    """uint16 has no place in this project's dtypes: the file is verified in the one pass, then MindSpore reads it."""
    path = str(tmp_path / "u16.ckpt")
    ms.save_checkpoint([{"name": "u", "data": ms.Tensor(np.arange(6, dtype=np.uint16))}], path)
    with pytest.raises(NotReadHere):
        load_ckpt(path)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mindformers"):
        loaded = read_checkpoint(path)
    np.testing.assert_array_equal(loaded["u"].asnumpy(), np.arange(6, dtype=np.uint16))
    assert caplog.text.count("cannot be verified") == 1  # one check, though two readers


def test_load_weights_gives_parameters_the_loaded_memory(tmp_path):
    path = training_save(tmp_path / "run.ckpt")
    model = ms.nn.Cell()
    model.w = ms.Parameter(ms.Tensor(np.zeros((6, 5), np.float32)), name="w")
    model.norm = ms.Parameter(ms.Tensor(np.zeros(5, np.float32)), name="norm")  # float16 in the file: cast
    loaded = read_checkpoint(path)
    assert load_weights(model, loaded, path) == []
    np.testing.assert_array_equal(model.w.asnumpy(), WEIGHT)
    np.testing.assert_array_equal(model.norm.asnumpy(), NORM.astype(np.float32))
    loaded["w"].asnumpy()[0, 0] = 42.0  # the same memory: no copy of the weights was made
    assert model.w.asnumpy()[0, 0] == 42.0


def test_load_weights_refuses_an_integer_tensor_for_a_float_weight(tmp_path):
    path = str(tmp_path / "ints.ckpt")
    save_checkpoint_atomic([{"name": "w", "data": ms.Tensor(np.ones((6, 5), np.int32))}], path)
    model = ms.nn.Cell()
    model.w = ms.Parameter(ms.Tensor(np.zeros((6, 5), np.float32)), name="w")
    with pytest.raises(ConfigError, match=r"ints.ckpt: tensor 'w' is Int32, the model expects Float32"):
        load_weights(model, read_checkpoint(path), path)


def test_without_a_manifest_any_changed_byte_before_the_crc_is_refused_as_damaged(tmp_path):
    """Lengths, names, dims and types as well as data: whatever the damaged structure makes the parse do (a length
    past the file, a shape no file holds, an unknown type), the CRC32 of the bytes it read says why."""
    original = training_save(tmp_path / "good.ckpt")
    os.remove(f"{original}.sha256")
    data = open(original, "rb").read()
    target = str(tmp_path / "bad.ckpt")
    for offset in range(len(data) - 17):
        damaged = bytearray(data)
        damaged[offset] ^= 0xFF
        with open(target, "wb") as stream:
            stream.write(bytes(damaged))
        with pytest.raises(DamagedCheckpoint, match="CRC32 differs"):
            read_checkpoint(target)
