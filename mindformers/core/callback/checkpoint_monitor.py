"""CheckpointMonitor: periodic, atomic, verifiable per-rank checkpoints with a retention limit."""
import logging
import os
import time

from mindformers.checkpoint import checkpoint_name, list_checkpoints, rank_dir, save_checkpoint_atomic
from mindformers.checkpoint.checkpoint_io import remove_checkpoint
from mindformers.checkpoint.integrity import remove_interrupted_saves
from mindformers.core.callback.callback import Callback
from mindformers.parallel.layout_file import write_layout_file
from mindformers.tools.errors import RunFault
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister
from mindformers.tools.register.value_spec import NON_NEGATIVE_NUMBER, POSITIVE_INT, STR, Value

logger = logging.getLogger("mindformers")


@MindFormerRegister.register(MindFormerModuleType.CALLBACK, alias="CheckpointMointor", value_specs={
    "prefix": Value(STR, nullable=False), "save_checkpoint_steps": POSITIVE_INT, "keep_checkpoint_max": POSITIVE_INT,
    "checkpoint_format": Value(STR, choices=("ckpt", "safetensors"), nullable=False),
    "save_checkpoint_seconds": NON_NEGATIVE_NUMBER, "keep_checkpoint_per_n_minutes": NON_NEGATIVE_NUMBER})
# (CheckpointMointor is MindFormers' old spelling)
class CheckpointMonitor(Callback):
    """Saves <output_dir>/checkpoint/rank_<r>/<prefix>_rank_<r>-<epoch>_<step>.ckpt every
    `save_checkpoint_steps` steps (and, with `save_checkpoint_seconds`, whenever that many seconds have passed since
    the last save) and at the end, keeping the newest `keep_checkpoint_max`. Each rank saves its own slices
    (integrated_save False); merging them is mindformers.tools.transform_ckpt's job.

    The file holds the network, optimizer state and loss scale (unless save_network_params only), plus
    epoch_num / step_num (global step) so a resume restarts at the same data position. Each save is verifiable
    (a `.sha256` manifest and MindSpore's CRC32, see checkpoint/integrity.py); a step whose loss or gradient norm is
    not finite is not saved, so the newest checkpoint is always the last good state.
    """

    def __init__(self, prefix="CKP", directory=None, save_checkpoint_steps=1, keep_checkpoint_max=5,
                 integrated_save=False, async_save=False, save_network_params=False, save_trainable_params=False,
                 checkpoint_format="ckpt", save_checkpoint_seconds=0, keep_checkpoint_per_n_minutes=0,
                 append_info=None, remove_redundancy=False):
        # Values other than the neutral ones are refused before the run (tools/register/unsupported_keys.py).
        del integrated_save, keep_checkpoint_per_n_minutes, remove_redundancy, async_save
        self.save_checkpoint_seconds = float(save_checkpoint_seconds or 0)
        self.prefix = prefix
        self.directory = directory
        self.save_checkpoint_steps = int(save_checkpoint_steps)  # >= 1, checked with the config
        self.keep_checkpoint_max = int(keep_checkpoint_max)
        self.network_only = save_network_params
        self.trainable_only = save_trainable_params  # PET: adapters only (load them with pet_config.adapter_checkpoint)
        self.format = checkpoint_format
        self.append_info = dict(append_info or {})
        self.last_saved_step = None
        self.last_saved_path = None
        self.last_saved_time = time.monotonic()
        self.layout_written_to = None

    def folder_for(self, output_dir, rank_id):
        if self.directory:
            return os.path.join(self.directory, f"rank_{rank_id}")
        return rank_dir(output_dir, rank_id)

    def folder(self, state):
        return self.folder_for(state.output_dir, state.rank_id)

    def remove_interrupted_saves(self, output_dir, rank_id):
        """Called before a run restores anything: what earlier, interrupted saves left here is deleted."""
        remove_interrupted_saves(self.folder_for(output_dir, rank_id))

    def save(self, state):
        if state.nonfinite_steps:
            logger.warning("not saving step %d: its loss or gradient norm is not finite (the newest checkpoint stays "
                           "the last good one)", state.global_step)
            return
        folder = self.folder(state)
        path = os.path.join(folder, checkpoint_name(self.prefix, state.rank_id, state.epoch, state.step_in_epoch,
                                                    self.format))
        append = dict(self.append_info)
        append.update({"epoch_num": state.epoch, "step_num": state.global_step, "loss_scale": state.loss_scale})
        target = state.train_cell.network if self.network_only else state.train_cell
        if self.trainable_only:
            target = [{"name": p.name, "data": p} for p in state.train_cell.network.trainable_params()]
        if state.extra.get("layout") and self.layout_written_to != folder:
            # Once per run, before the first checkpoint appears (an earlier run into the same folder may have used
            # another mesh): the strategy a later load is checked against and resharded from.
            write_layout_file(folder, state.extra["layout"])
            self.layout_written_to = folder
        try:
            save_checkpoint_atomic(target, path, append_dict=append, fmt=self.format)
        except RunFault as error:
            kept = list_checkpoints(folder)
            previous = f"the newest complete checkpoint, {kept[-1]}, is kept" if kept else "no earlier checkpoint exists"
            raise RunFault(f"{error}; {previous}") from None
        self.last_saved_step = state.global_step
        self.last_saved_path = path
        self.last_saved_time = time.monotonic()
        logger.info("saved checkpoint %s", path)
        for stale in list_checkpoints(folder)[:-self.keep_checkpoint_max]:
            remove_checkpoint(stale)

    def on_train_begin(self, state):
        self.last_saved_time = time.monotonic()

    def on_step_end(self, state):
        seconds_due = self.save_checkpoint_seconds and \
            time.monotonic() - self.last_saved_time >= self.save_checkpoint_seconds
        if state.global_step % self.save_checkpoint_steps == 0 or seconds_due:
            self.save(state)

    def on_train_end(self, state):
        if state.global_step and self.last_saved_step != state.global_step:
            self.save(state)
