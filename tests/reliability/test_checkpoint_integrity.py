"""Checkpoints that cannot lie, in-process on small real files: any changed byte is refused by name, a resume takes
the newest save that is whole and verifies, interrupted saves leave nothing that counts, a full disk keeps the
previous checkpoint."""
import errno
import logging
import os
import shutil
import subprocess
import sys
import textwrap

import mindspore as ms
import numpy as np
import pytest

from mindformers.checkpoint import read_checkpoint, resolve_checkpoint, save_checkpoint_atomic
from mindformers.checkpoint.ckpt_stream import read_ckpt
from mindformers.checkpoint.integrity import (CRC, UNVERIFIED, VERIFIED, DamagedCheckpoint, remove_interrupted_saves,
                                              verify_checkpoint)
from mindformers.core.callback import CheckpointMonitor, TrainState
from mindformers.tools.errors import ConfigError, RunFault
from tests.e2e.helpers import REPO


def tensors(seed=0):
    rng = np.random.default_rng(seed)
    return [{"name": name, "data": ms.Parameter(ms.Tensor(rng.standard_normal(shape).astype(np.float32)), name=name)}
            for name, shape in (("model.w", (8, 16)), ("model.norm", (16,)), ("adam_m.model.w", (8, 16)))]


def save(path, seed=0):
    save_checkpoint_atomic(tensors(seed), str(path), append_dict={"step_num": seed})
    return str(path)


def data_offsets(path):
    """Every byte offset of the file that holds tensor data."""
    return [offset + i for info in read_ckpt(path).values() for _, offset, size in info.segments
            for i in range(size)]


def flipped(source, target, offset):
    data = bytearray(open(source, "rb").read())
    data[offset] ^= 0x01  # one bit: the smallest change there is
    with open(target, "wb") as stream:
        stream.write(bytes(data))


# Both ways a file is checked: alone, and while it is loaded in one pass (ckpt_load.py).
CHECKS = pytest.mark.parametrize("check", [verify_checkpoint, read_checkpoint], ids=["verify", "one-pass-load"])


@CHECKS
@pytest.mark.parametrize("with_manifest", [True, False], ids=["manifest", "crc-only"])
def test_flipping_any_byte_of_tensor_data_is_refused(tmp_path, with_manifest, check):
    """Every position of every tensor's data, one at a time: the manifest's sha256 (or, without it, MindSpore's CRC32)
    refuses each one, with one line naming the file; the intact file verifies and loads as saved."""
    original = save(tmp_path / "good.ckpt")
    target = str(tmp_path / "bad.ckpt")
    if with_manifest:
        shutil.copy(f"{original}.sha256", f"{target}.sha256")
        with open(f"{target}.sha256", "w", encoding="utf-8") as stream:  # the same digest, listed under bad.ckpt
            stream.write(open(f"{original}.sha256", encoding="utf-8").read().replace("good.ckpt", "bad.ckpt"))
    offsets = data_offsets(original)
    assert len(offsets) == 4 * (8 * 16 + 16 + 8 * 16) + 8  # three float32 tensors and the int64 step_num
    for offset in offsets:
        flipped(original, target, offset)
        with pytest.raises(DamagedCheckpoint) as caught:
            check(target)
        assert str(caught.value).startswith(f"load_checkpoint: {target}: damaged checkpoint")
        assert "\n" not in str(caught.value)
    shutil.copy(original, target)
    assert verify_checkpoint(target) == (VERIFIED if with_manifest else CRC)
    loaded = read_checkpoint(target)
    np.testing.assert_array_equal(loaded["model.w"].asnumpy(), tensors()[0]["data"].asnumpy())


@CHECKS
def test_any_byte_of_the_file_is_covered_by_the_manifest(tmp_path, check):
    """Headers, names, shapes and the CRC trailer too: a changed byte that also breaks the file's structure is
    reported as the damage it is, not as an unreadable file."""
    original = save(tmp_path / "good.ckpt")
    target = str(tmp_path / "good.ckpt.copy")
    shutil.copy(f"{original}.sha256", f"{target}.sha256")
    with open(f"{target}.sha256", "w", encoding="utf-8") as stream:
        stream.write(open(f"{original}.sha256", encoding="utf-8").read().replace("good.ckpt", "good.ckpt.copy"))
    for offset in range(os.path.getsize(original)):
        flipped(original, target, offset)
        with pytest.raises(DamagedCheckpoint):
            check(target)


def test_checkpoints_of_earlier_versions_and_other_tools_load_with_a_warning(tmp_path, caplog):
    legacy = str(tmp_path / "legacy.ckpt")
    ms.save_checkpoint(tensors(), legacy)  # no CRC, no manifest: what this project wrote before, or MindFormers
    with caplog.at_level(logging.WARNING, logger="mindformers"):
        assert verify_checkpoint(legacy) == UNVERIFIED
        loaded = read_checkpoint(legacy)
    assert "cannot be verified" in caplog.text and "legacy.ckpt" in caplog.text
    np.testing.assert_array_equal(loaded["model.norm"].asnumpy(), tensors()[1]["data"].asnumpy())


def make_saves(folder, steps, rank=0, prefix="run"):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, step in enumerate(steps):
        path = save(folder / f"{prefix}_rank_{rank}-1_{step}.ckpt", seed=step)
        os.utime(path, ns=(10**18 + index * 10**9,) * 2)  # saved in this order
        paths.append(path)
    return paths


def damage(path):
    """A bit flipped in place the way storage rots: the modification time stays what it was."""
    times = os.stat(path)
    os.chmod(path, 0o600)
    flipped(path, path, os.path.getsize(path) // 2)
    os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))


def test_a_resume_takes_the_newest_intact_save_and_says_what_it_skipped(tmp_path, caplog):
    old, middle, newest = make_saves(tmp_path / "checkpoint" / "rank_0", [2, 4, 6])
    assert resolve_checkpoint(tmp_path / "checkpoint") == newest
    damage(newest)
    with caplog.at_level(logging.WARNING, logger="mindformers"):
        assert resolve_checkpoint(tmp_path / "checkpoint") == middle
    assert f"skipping {newest} (damaged: sha256 differs" in caplog.text
    assert f"taking {middle}, the newest intact checkpoint" in caplog.text
    damage(middle)
    assert resolve_checkpoint(tmp_path / "checkpoint") == old
    damage(old)
    with pytest.raises(ConfigError, match=r"no intact checkpoint in .*rank_0 \(run_rank_0-1_6.ckpt: damaged"):
        resolve_checkpoint(tmp_path / "checkpoint")
    with pytest.raises(DamagedCheckpoint, match="run_rank_0-1_6.ckpt: damaged"):  # a file named: that file or nothing
        read_checkpoint(newest)


def test_ranks_resume_from_a_save_every_rank_finished(tmp_path):
    """rank 1 was killed before its step-6 save: both ranks resume from step 4, the last save both made."""
    root = tmp_path / "checkpoint"
    make_saves(root / "rank_0", [2, 4, 6], rank=0)
    make_saves(root / "rank_1", [2, 4], rank=1)
    assert resolve_checkpoint(root, rank_id=0).endswith("run_rank_0-1_4.ckpt")
    assert resolve_checkpoint(root, rank_id=1).endswith("run_rank_1-1_4.ckpt")
    damage(str(root / "rank_1" / "run_rank_1-1_4.ckpt"))  # the other ranks cannot see it: stop instead
    with pytest.raises(ConfigError, match="ranks of a distributed run resume from one save"):
        resolve_checkpoint(root, rank_id=1)


def test_what_interrupted_saves_left_is_removed_and_never_counted(tmp_path):
    folder = tmp_path / "rank_0"
    kept = make_saves(folder, [2])
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    gone = int(finished.stdout)  # a process that has ended
    leftovers = [f".tmp-{gone}-run_rank_0-1_4.ckpt", f".tmp-{gone}-run_rank_0-1_4.tmp",
                 f".tmp-{gone}-run_rank_0-1_4.ckpt.sha256", "run_rank_0-1_4.ckpt.sha256"]
    live = f".tmp-{os.getppid()}-run_rank_0-1_6.ckpt"  # another process still writing: left alone
    for name in leftovers + [live]:
        (folder / name).write_bytes(b"partial")
    assert resolve_checkpoint(folder) == kept[0]  # temporary files and orphan manifests never count as saves
    assert sorted(remove_interrupted_saves(str(folder))) == sorted(leftovers)
    assert sorted(os.listdir(folder)) == sorted([live, "run_rank_0-1_2.ckpt", "run_rank_0-1_2.ckpt.sha256"])


class Step:
    """The TrainState a CheckpointMonitor saves from, around a real (tiny) cell."""

    def __init__(self, output_dir):
        self.state = TrainState(train_cell=ms.nn.Dense(8, 4), model_config=None, output_dir=str(output_dir))

    def at(self, step):
        self.state.global_step = self.state.step_in_epoch = step
        return self.state


def test_retention_removes_whole_saves(tmp_path):
    monitor = CheckpointMonitor(prefix="r", save_checkpoint_steps=1, keep_checkpoint_max=2)
    step = Step(tmp_path)
    for number in (1, 2, 3):
        monitor.on_step_end(step.at(number))
    folder = tmp_path / "checkpoint" / "rank_0"
    assert sorted(os.listdir(folder)) == ["r_rank_0-1_2.ckpt", "r_rank_0-1_2.ckpt.sha256", "r_rank_0-1_3.ckpt",
                                          "r_rank_0-1_3.ckpt.sha256"]


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """OSError(ENOSPC) injected at MindSpore's write, after part of the file is on disk."""
    monitor = CheckpointMonitor(prefix="d", save_checkpoint_steps=1)
    step = Step(tmp_path)
    monitor.on_step_end(step.at(1))
    folder = tmp_path / "checkpoint" / "rank_0"
    before = sorted(os.listdir(folder))
    real_save = ms.save_checkpoint

    def disk_fills(save_obj, path, **kwargs):
        with open(os.path.splitext(path)[0] + ".tmp", "wb") as stream:  # where MindSpore writes before renaming
            stream.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ms, "save_checkpoint", disk_fills)
    with pytest.raises(RunFault) as caught:
        monitor.on_step_end(step.at(2))
    message = str(caught.value)
    assert "cannot save checkpoint" in message and "d_rank_0-1_2.ckpt" in message
    assert "No space left on device" in message and "the partial file was removed" in message
    assert f"{folder}/d_rank_0-1_1.ckpt, is kept" in message and "\n" not in message
    assert sorted(os.listdir(folder)) == before
    monkeypatch.setattr(ms, "save_checkpoint", real_save)
    assert verify_checkpoint(str(folder / "d_rank_0-1_1.ckpt")) == VERIFIED


FULL_DISK_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import mindspore as ms
    from mindformers.core.callback import CheckpointMonitor, TrainState
    from mindformers.tools.dataset_preprocess.llama import llama_preprocess
    from mindformers.tools.errors import RunFault
    disk, text, model = sys.argv[1:4]
    report = {}
    monitor = CheckpointMonitor(prefix="f", save_checkpoint_steps=1)
    state = TrainState(train_cell=ms.nn.Dense(180, 180), model_config=None, output_dir=disk)
    for step in (1, 2):
        state.global_step = state.step_in_epoch = step
        try:
            monitor.on_step_end(state)
        except RunFault as error:
            report["save"] = str(error)
    report["checkpoints"] = sorted(os.listdir(os.path.join(disk, "checkpoint", "rank_0")))
    try:
        llama_preprocess.main(["--input_glob", text, "--model_file", model, "--seq_length", "32",
                               "--output_file", os.path.join(disk, "data", "big.mindrecord")])
    except SystemExit as exit:
        report["preprocess_exit"] = exit.code
    report["data"] = sorted(os.listdir(os.path.join(disk, "data"))) if os.path.isdir(os.path.join(disk, "data")) \\
        else []
    print("REPORT" + json.dumps(report))
""")


def test_a_real_full_disk(tmp_path, sp_model_file, sample_text_files):
    """A 200 KB tmpfs mounted in a user namespace (no root needed where the kernel allows them): the first
    checkpoint (~130 KB) fits, the second does not; preprocessing 1 MB of text into it does not either."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-Urm", "true"], capture_output=True,
                                                         check=False).returncode != 0:
        pytest.skip("no user namespaces here to mount a small tmpfs in (the injected ENOSPC test covers the logic)")
    disk = tmp_path / "disk"
    disk.mkdir()
    text = tmp_path / "text.txt"
    text.write_text(open(sample_text_files[0], encoding="utf-8").read()[:1_000_000])
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK_SCRIPT)
    command = (f"mount -t tmpfs -o size=200k tmpfs {disk} && "
               f"{sys.executable} {script} {disk} {text} {sp_model_file}")
    env = dict(os.environ, PYTHONPATH=REPO, GLOG_v="3")
    result = subprocess.run(["unshare", "-Urm", "sh", "-c", command], capture_output=True, text=True, timeout=300,
                            env=env, check=False)
    reports = [line for line in result.stdout.splitlines() if line.startswith("REPORT")]
    assert reports, result.stdout[-2000:] + result.stderr[-3000:]
    import json  # pylint: disable=import-outside-toplevel
    report = json.loads(reports[0][len("REPORT"):])
    assert "No space left on device" in report["save"] and "f_rank_0-1_1.ckpt, is kept" in report["save"]
    assert report["checkpoints"] == ["f_rank_0-1_1.ckpt", "f_rank_0-1_1.ckpt.sha256", "strategy.json"] or \
        report["checkpoints"] == ["f_rank_0-1_1.ckpt", "f_rank_0-1_1.ckpt.sha256"]
    assert report["preprocess_exit"] == 1 and report["data"] == []
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--output_file" in errors[0] and "No space left on device" in errors[0], result.stderr
