"""Faults during real training runs lose nothing.

- kill -9 inside a save, then SIGTERM, then a plain resume: each start resumes from the newest intact checkpoint,
  removes what the killed save left, and the final weights equal the uninterrupted run's bit for bit;
- a loss that turns NaN stops the run after runner_config.max_nonfinite_steps, the last good checkpoint intact;
- a data file removed mid-run stops it at that step, with that step saved.

The killed and signalled runs are real subprocesses of run_mindformer.py; the reference and the two other runs run
in this process (their callbacks are registered here, as a user registers one).
"""
import os
import re
import signal
import subprocess
import sys
import time

import mindspore as ms
import numpy as np
import pytest

from mindformers.checkpoint.integrity import VERIFIED, verify_checkpoint
from mindformers.core.callback import Callback
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister
from tests.e2e.helpers import REPO, merge_sections, run_main, write_user_config

STEPS = 29  # 233 rows of the session's MindRecord in batches of 8
SMALL = dict(vocab_size=600, seq_length=32, num_layers=1, hidden_size=32, num_heads=2, n_kv_heads=2,
             intermediate_size=64)
CHECKPOINTS = [{"type": "MFLossMonitor", "per_print_times": 1},
               {"type": "CheckpointMonitor", "prefix": "k", "save_checkpoint_steps": 2, "keep_checkpoint_max": 3}]
SAVE = re.compile(r"^k_rank_0-1_(\d+)\.ckpt$")


@MindFormerRegister.register(MindFormerModuleType.CALLBACK)
class PoisonWeightsForTest(Callback):
    """Makes one weight NaN after step `at_step` (after that step's checkpoint): every later loss is NaN."""

    def __init__(self, at_step):
        self.at_step = at_step

    def on_step_end(self, state):
        if state.global_step == self.at_step:
            param = next(iter(state.train_cell.network.get_parameters()))
            param.set_data(ms.Tensor(np.full(param.shape, np.nan, np.float32)))


@MindFormerRegister.register(MindFormerModuleType.CALLBACK)
class RemoveFileForTest(Callback):
    """Deletes `path` when step `at_step` ends, as a cleanup job running beside a training run might."""

    def __init__(self, path, at_step):
        self.path, self.at_step = path, at_step

    def on_step_end(self, state):
        if state.global_step == self.at_step:
            os.remove(self.path)


def user_config(folder, sp_model_file, dataset, callbacks=None, **sections):
    defaults = {"seed": 42, "context": {"mode": 0}, "runner_config": {"epochs": 1, "batch_size": 8},
                "train_dataset": {"data_loader": {"dataset_dir": dataset}}, "callbacks": callbacks or CHECKPOINTS}
    return write_user_config(folder / "run.yaml", "llama2/pretrain_llama2_tiny.yaml", sp_model_file, sizes=SMALL,
                             **merge_sections(defaults, sections))


def saves(folder):
    """Step -> path of every complete save in a rank folder."""
    if not os.path.isdir(folder):
        return {}
    return {int(match.group(1)): os.path.join(folder, name)
            for name, match in ((name, SAVE.match(name)) for name in os.listdir(folder)) if match}


def temporaries(folder):
    return sorted(name for name in os.listdir(folder) if name.startswith(".tmp-")) if os.path.isdir(folder) else []


def weights(path):
    return {name: value.asnumpy() for name, value in ms.load_checkpoint(path).items()}


def in_process(argv, capsys):
    capsys.readouterr()  # what earlier code printed is not this run's
    return run_main(argv, capsys)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, sp_model_file, wiki_mindrecord):
    folder = tmp_path_factory.mktemp("faults")
    return folder, user_config(folder, sp_model_file, wiki_mindrecord)


def start(config, output, *flags):
    env = dict(os.environ, GLOG_v="3", PYTHONWARNINGS="ignore")
    return subprocess.Popen([sys.executable, "run_mindformer.py", "--config", config, "--output_dir", output,
                             *flags], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_inside_a_save(process, folder, timeout=300):
    """SIGKILL the run the moment a checkpoint's temporary file is on disk (after at least one save is complete)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if saves(folder) and any("k_rank_0-" in name for name in temporaries(folder)):
            seen = temporaries(folder)
            process.kill()
            process.wait()
            return seen
        time.sleep(0.0005)
    process.kill()
    process.wait()
    raise AssertionError(f"no save was caught in progress; stderr: {process.stderr.read()[-2000:]}")


def test_kill_inside_a_save_then_sigterm_then_resume_equals_the_uninterrupted_run(setup, tmp_path, capsys):
    folder, config = setup
    reference_dir = folder / "reference"
    code, _, err = in_process(["--config", config, "--output_dir", reference_dir], capsys)
    assert code == 0, err
    reference = weights(saves(reference_dir / "checkpoint" / "rank_0")[STEPS])

    output = str(tmp_path / "interrupted")
    ranks = os.path.join(output, "checkpoint", "rank_0")
    assert kill_inside_a_save(start(config, output), ranks)  # the temporary files of the save it was in
    newest = max(saves(ranks))
    left = temporaries(ranks)  # what the killed save left (it may have finished its rename before the kill landed)

    second = start(config, output, "--resume_training", "True")
    log = []
    for line in second.stdout:  # let it train past its resume point, then ask it to stop
        log.append(line)
        match = re.search(r"\(global (\d+)/", line)
        if match and int(match.group(1)) >= newest + 3:
            second.send_signal(signal.SIGTERM)
            break
    log += second.stdout.readlines()
    stderr = second.stderr.read()
    assert second.wait() == 128 + signal.SIGTERM, stderr[-2000:]
    text = "".join(log)
    assert f"resuming at global step {newest}" in text
    assert not temporaries(ranks), temporaries(ranks)
    if left:
        assert "removed what interrupted saves left" in text and all(name in text for name in left), (left, text)
    stopped = [line for line in stderr.splitlines() if line.startswith("stopped:")]
    assert len(stopped) == 1 and "Traceback" not in stderr, stderr
    stopped_at = int(re.search(r"SIGTERM at step (\d+) of 29", stopped[0]).group(1))
    assert stopped_at >= newest + 3 and stopped[0].endswith("resume with --resume_training True")
    assert stopped_at in saves(ranks) and verify_checkpoint(saves(ranks)[stopped_at]) == VERIFIED

    code, out, err = in_process(["--config", config, "--output_dir", output, "--resume_training", "True"], capsys)
    assert code == 0, err
    assert f"resuming at global step {stopped_at}" in out
    assert not temporaries(ranks)
    final = weights(saves(ranks)[STEPS])
    assert sorted(final) == sorted(reference)
    for name, value in reference.items():
        np.testing.assert_array_equal(final[name], value, err_msg=name)


def test_a_loss_that_turns_nan_stops_the_run_with_the_last_good_checkpoint(setup, sp_model_file, wiki_mindrecord,
                                                                           tmp_path, capsys):
    config = user_config(tmp_path, sp_model_file, wiki_mindrecord,
                         callbacks=CHECKPOINTS + [{"type": "PoisonWeightsForTest", "at_step": 6}],
                         runner_config={"max_nonfinite_steps": 2})
    code, out, err = in_process(["--config", config, "--output_dir", tmp_path / "out"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1, err
    assert "runner_config.max_nonfinite_steps" in errors[0] and "(steps 7-8)" in errors[0]
    ranks = tmp_path / "out" / "checkpoint" / "rank_0"
    assert sorted(saves(ranks)) == [2, 4, 6]  # step 8 was due, and not saved
    assert f"{saves(ranks)[6]}, is kept" in errors[0]
    assert verify_checkpoint(saves(ranks)[6]) == VERIFIED
    assert all(np.isfinite(value).all() for value in weights(saves(ranks)[6]).values())
    assert "not saving step 8" in out


def test_a_data_file_removed_mid_run_stops_at_that_step_with_it_saved(setup, sp_model_file, wiki_mindrecord,
                                                                      tmp_path, capsys):
    import shutil  # pylint: disable=import-outside-toplevel
    data = tmp_path / "data"
    data.mkdir()
    for suffix in ("", ".db"):
        shutil.copy(wiki_mindrecord + suffix, data / (os.path.basename(wiki_mindrecord) + suffix))
    dataset = str(data / os.path.basename(wiki_mindrecord))
    config = user_config(tmp_path, sp_model_file, dataset,
                         callbacks=CHECKPOINTS + [{"type": "RemoveFileForTest", "path": dataset, "at_step": 5}])
    code, _, err = in_process(["--config", config, "--output_dir", tmp_path / "out"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, err
    ranks = tmp_path / "out" / "checkpoint" / "rank_0"
    assert f"{dataset} was removed while the run was reading it; stopped before step 6" in errors[0]
    assert errors[0].endswith(f"saved {saves(ranks)[5]}")
    assert verify_checkpoint(saves(ranks)[5]) == VERIFIED
