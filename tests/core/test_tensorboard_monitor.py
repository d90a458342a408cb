"""TensorBoardMonitor in-process: every number of the step record becomes a scalar (lists and mappings by index and
key, as mixture-of-experts load is logged), the section's switches drop loss scale and timers, only rank 0 writes
unless all_ranks, and the section's keys are checked like every other section's."""
import pytest

from mindformers.core.callback import TensorBoardMonitor, TrainState
from mindformers.tools.errors import ConfigError
from mindformers.tools.register.config_schema import validate_section_tree

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def run_steps(monitor, output_dir, rank_id=0, steps=3):
    state = TrainState(train_cell=None, model_config=None, output_dir=str(output_dir), rank_id=rank_id,
                       total_steps=steps)
    state.extra["run_info"] = {"model_name": "tiny", "config": {"seed": 1}}
    monitor.on_train_begin(state)
    for step in range(1, steps + 1):
        state.global_step, state.loss = step, 10.0 / step
        state.extra["step_record"] = {
            "step": step, "epoch": 1, "loss": state.loss, "lr": 1e-3 * step, "grad_norm": 0.5, "loss_scale": 1024.0,
            "overflow": False, "step_time": 0.25, "tokens_per_s": 100.0 * step, "mfu": 0.01, "eta_s": 3.0,
            "aux_loss": 0.02 * step, "expert_load": [[3, 5], [4, step]], "dropped": {"layer_0": step}}
        monitor.on_step_end(state)
    monitor.on_train_end(state)


def scalars(folder):
    events = event_accumulator.EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}, events


def test_every_number_of_the_record_is_a_scalar(tmp_path):
    run_steps(TensorBoardMonitor(tensorboard_dir=str(tmp_path / "tb"), tensorboard_queue_size=2), tmp_path)
    written, events = scalars(tmp_path / "tb" / "rank_0")
    assert set(written) == {"loss", "learning-rate", "grad-norm", "loss-scale", "iteration-time", "throughput", "mfu",
                            "aux_loss", "expert_load/0/0", "expert_load/0/1", "expert_load/1/0", "expert_load/1/1",
                            "dropped/layer_0"}
    assert written["loss"] == [(1, 10.0), (2, 5.0), (3, pytest.approx(10 / 3))]
    assert written["expert_load/1/1"] == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert "config/text_summary" in events.Tags()["tensors"]


def test_switches_and_ranks(tmp_path):
    run_steps(TensorBoardMonitor(log_loss_scale_to_tensorboard=False, log_timers_to_tensorboard=False), tmp_path)
    written, _ = scalars(tmp_path / "tensorboard" / "rank_0")  # the default folder: <output_dir>/tensorboard
    assert not {"loss-scale", "iteration-time", "throughput", "mfu"} & set(written) and "loss" in written
    run_steps(TensorBoardMonitor(), tmp_path, rank_id=1)
    assert not (tmp_path / "tensorboard" / "rank_1").exists()
    run_steps(TensorBoardMonitor(all_ranks=True), tmp_path, rank_id=1)
    assert "loss" in scalars(tmp_path / "tensorboard" / "rank_1")[0]


def test_the_section_is_checked():
    validate_section_tree({"tensorboard": {"tensorboard_dir": "tb", "tensorboard_queue_size": 10}}, "run.yaml")
    with pytest.raises(ConfigError, match="run.yaml: tensorboard.tensorbord_dir: unknown key; did you mean "
                                          "'tensorboard_dir'"):
        validate_section_tree({"tensorboard": {"tensorbord_dir": "tb"}}, "run.yaml")
    with pytest.raises(ConfigError, match="tensorboard.tensorboard_queue_size: expected an integer"):
        validate_section_tree({"tensorboard": {"tensorboard_queue_size": "ten"}}, "run.yaml")
