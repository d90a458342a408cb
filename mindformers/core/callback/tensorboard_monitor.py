"""TensorBoardMonitor: training scalars as TensorBoard event files, from the YAML's `tensorboard` section.

    tensorboard:
      tensorboard_dir: 'worker/tensorboard'     # default <output_dir>/tensorboard; events go to <dir>/rank_<r>/
      tensorboard_queue_size: 10                # events held before they are written
      log_loss_scale_to_tensorboard: True
      log_timers_to_tensorboard: True           # iteration time, throughput and MFU
      all_ranks: False                          # only rank 0 writes unless True

Tags follow MindFormers (and Megatron, which it follows): loss, learning-rate, grad-norm, loss-scale,
iteration-time, throughput (tokens/s) and mfu. Every other number of the step record MFLossMonitor writes to
train_metrics.jsonl is written under its own name (a list as name/<index>, a mapping as name/<key>), so per-expert
load and auxiliary losses of mixture-of-experts models appear as they are logged. Evaluation results go under
eval/<metric>/<key>. The events are written by tensorboardX; `tensorboard --logdir DIR` shows them.
"""
import json
import logging
import os

from mindformers.core.callback.callback import Callback
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister

logger = logging.getLogger("mindformers")

# record key -> tag, for the keys that have MindFormers' names; None: not a scalar to plot
_TAGS = {"loss": "loss", "lr": "learning-rate", "grad_norm": "grad-norm", "loss_scale": "loss-scale",
         "step_time": "iteration-time", "tokens_per_s": "throughput", "mfu": "mfu",
         "step": None, "epoch": None, "step_in_epoch": None, "overflow": None, "eta_s": None, "time": None}
_TIMERS = ("step_time", "tokens_per_s", "mfu")


def event_folder(tensorboard_dir, output_dir, rank_id):
    return os.path.join(os.path.abspath(tensorboard_dir or os.path.join(output_dir, "tensorboard")),
                        f"rank_{rank_id}")


def numeric_leaves(name, value):
    """(tag, number) for a number, or for every number inside lists and mappings (name/index, name/key)."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, float)):
        yield name, float(value)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from numeric_leaves(f"{name}/{index}", item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from numeric_leaves(f"{name}/{key}", item)


def summary_writer(folder, queue_size, purge_step=None):
    from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
    return SummaryWriter(folder, max_queue=queue_size, purge_step=purge_step)


def basic_record(state):
    """The step's numbers the train state holds, for runs without MFLossMonitor's record."""
    return {"step": state.global_step, "loss": state.loss, "lr": state.lr, "grad_norm": state.grad_norm,
            "loss_scale": state.loss_scale, "step_time": state.step_time}


@MindFormerRegister.register(MindFormerModuleType.CALLBACK)
class TensorBoardMonitor(Callback):
    """Writes each step's scalars (and the run's config as text) to <tensorboard_dir>/rank_<r>/events.*."""

    def __init__(self, tensorboard_dir=None, tensorboard_queue_size=10, log_loss_scale_to_tensorboard=True,
                 log_timers_to_tensorboard=True, all_ranks=False):
        self.tensorboard_dir = tensorboard_dir
        self.queue_size = max(1, int(tensorboard_queue_size))
        self.skipped = set() if log_loss_scale_to_tensorboard else {"loss_scale"}
        if not log_timers_to_tensorboard:
            self.skipped.update(_TIMERS)
        self.all_ranks = all_ranks
        self.writer = None

    def on_train_begin(self, state):
        if state.rank_id != 0 and not self.all_ranks:
            return
        folder = event_folder(self.tensorboard_dir, state.output_dir, state.rank_id)
        # A resumed run hides the events a crashed run wrote after the resume point.
        self.writer = summary_writer(folder, self.queue_size, purge_step=state.initial_step + 1 if state.initial_step else None)
        run_info = state.extra.get("run_info")
        if run_info:
            text = json.dumps(run_info, indent=2, default=str)
            self.writer.add_text("config", "    " + text.replace("\n", "\n    "), state.initial_step)
        logger.info("TensorBoard events: %s", folder)

    def on_step_end(self, state):
        if self.writer is None:
            return
        record = state.extra.get("step_record")
        if not record or record.get("step") != state.global_step:
            record = basic_record(state)
        for key, value in record.items():
            if key in self.skipped or (key in _TAGS and _TAGS[key] is None):
                continue
            for tag, number in numeric_leaves(_TAGS.get(key, key), value):
                self.writer.add_scalar(tag, number, state.global_step)

    def on_train_end(self, state):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def write_eval_scalars(section, output_dir, results, step):
    """Evaluation results ({metric: {key: number}} or a benchmark's nested dict) as eval/<metric>/<key> scalars at
    the evaluated checkpoint's training step, for a run whose config has a `tensorboard` section."""
    section = dict(section or {})
    folder = event_folder(section.get("tensorboard_dir"), output_dir, 0)
    writer = summary_writer(folder, int(section.get("tensorboard_queue_size") or 10))
    try:
        for tag, number in numeric_leaves("eval", results):
            writer.add_scalar(tag, number, step)
    finally:
        writer.close()
    logger.info("TensorBoard eval scalars (step %d): %s", step, folder)
