"""The pieces a training run stops with, one by one: signals wait for the step, non-finite steps are counted, and a
MindRecord file that vanishes or changes under a reader is caught at the next batch."""
import os
import shutil
import signal
from types import SimpleNamespace

import pytest
from mindspore import nn

from mindformers.dataset.dataloader.mind_dataset import MindDataset
from mindformers.tools.errors import DataError, RunFault
from mindformers.trainer.fault_handling import NonFiniteGuard, StopRequests


def test_sigterm_and_ctrl_c_are_recorded_until_the_step_ends():
    before = signal.getsignal(signal.SIGTERM)
    with StopRequests() as stop:
        os.kill(os.getpid(), signal.SIGTERM)  # delivered here, between two bytecodes, as it would be mid-step
        assert stop.requested and stop.signal_number == signal.SIGTERM
        stop.signal_number = None
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signal_number == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):  # the second Ctrl-C does not wait
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before


def state(loss, grad_norm, loss_scale=1.0, step=1):
    return SimpleNamespace(loss=loss, grad_norm=grad_norm, loss_scale=loss_scale, global_step=step, nonfinite_steps=0)


def test_non_finite_steps_are_counted_in_a_row():
    guard = NonFiniteGuard(3, train_cell=None)
    run = state(1.0, 1.0)
    for step, (loss, norm) in enumerate([(2.0, float("inf")), (float("nan"), 1.0), (1.5, 0.3),  # recovered
                                         (float("nan"), float("nan")), (float("inf"), 2.0)], start=1):
        run.loss, run.grad_norm, run.global_step = loss, norm, step
        assert not guard.check(run)
    assert run.nonfinite_steps == 2
    run.loss, run.global_step = float("nan"), 6
    assert guard.check(run)
    fault = guard.fault(run, "/ckpt/last_rank_0-1_3.ckpt")
    assert isinstance(fault, RunFault) and fault.exit_code == 1
    assert "3 steps in a row (steps 4-6)" in str(fault) and "last_rank_0-1_3.ckpt, is kept" in str(fault)


def test_an_overflow_a_dynamic_loss_scale_can_still_absorb_is_not_a_fault():
    cell = SimpleNamespace(loss_scale_manager=nn.DynamicLossScaleUpdateCell(1024.0, 2, 100))
    guard = NonFiniteGuard(1, cell)
    assert not guard.check(state(3.0, float("inf"), loss_scale=1024.0))  # the scale halves, the step is skipped
    assert guard.check(state(3.0, float("inf"), loss_scale=1.0))  # nothing left to lower
    assert NonFiniteGuard(1, cell).check(state(float("nan"), 1.0, loss_scale=1024.0))  # the loss itself


@pytest.mark.parametrize("change", ["removed", "replaced", "appended"])
def test_a_data_file_changed_under_the_reader_is_caught_at_the_next_batch(change, tmp_path, wiki_mindrecord):
    name = os.path.basename(wiki_mindrecord)  # MindRecord keeps its file name inside: copies keep it too
    for suffix in ("", ".db"):
        shutil.copy(wiki_mindrecord + suffix, tmp_path / f"{name}{suffix}")
    path = str(tmp_path / name)
    loader = MindDataset(path, shuffle=False)
    batches = loader.read_batches(list(range(loader.num_rows)), 4)
    next(batches)
    if change == "removed":
        os.remove(path)
    elif change == "replaced":
        os.rename(path, path + ".old")
        shutil.copy(path + ".old", path)
    else:
        with open(path, "ab") as stream:
            stream.write(b"\0" * 16)
    with pytest.raises(DataError) as caught:
        next(batches)
    assert str(caught.value).startswith(f"train_dataset.data_loader.dataset_dir: {path}")
    assert ("was removed" if change == "removed" else "changed") in str(caught.value)
