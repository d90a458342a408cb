"""ObsMonitor: copies the run's output folder to remote storage as MindFormers does on ModelArts (AICC).

An `obs://` or `s3://` target is written through ModelArts' `moxing` package where it is installed; without it the
monitor warns once and does nothing. An absolute local path (or `file://`) is a mirror on this machine, e.g. a
mounted share. Anything else (such as MindFormers' placeholder remote_save_url) uploads nothing, with one warning.
"""
import logging
import os
import shutil

from mindformers.core.callback.callback import Callback
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister

logger = logging.getLogger("mindformers")
REMOTE_SCHEMES = ("obs://", "s3://")


def mirror_folder(source, target, remove_stale):
    """Copy every file of `source` under `target`; with `remove_stale`, delete target files source does not have."""
    shutil.copytree(source, target, dirs_exist_ok=True)
    if not remove_stale:
        return
    for folder, _, names in os.walk(target, topdown=False):
        for name in names:
            path = os.path.join(folder, name)
            if not os.path.exists(os.path.join(source, os.path.relpath(path, target))):
                os.remove(path)


@MindFormerRegister.register(MindFormerModuleType.CALLBACK)
class ObsMonitor(Callback):
    """Uploads `src_dir` (default: the run's output_dir) to `target_dir` (default: the YAML's remote_save_url) every
    `step_upload_frequence` steps and when training ends, from rank `rank_id` (default 0) only. `upload_frequence` is
    the older name of the step interval; `keep_last` removes remote files the output folder no longer has."""

    CONFIG_DEFAULTS = {"target_dir": "remote_save_url"}  # filled from the run's config when not given

    def __init__(self, src_dir=None, target_dir=None, rank_id=None, upload_frequence=None, step_upload_frequence=100,
                 epoch_upload_frequence=-1, keep_last=True):
        self.src_dir = src_dir
        self.target_dir = str(target_dir) if target_dir else ""
        self.rank_id = int(rank_id or 0)
        self.every_steps = int(upload_frequence if upload_frequence is not None else step_upload_frequence)
        self.every_epochs = int(epoch_upload_frequence)
        self.keep_last = bool(keep_last)
        self.uploader = None

    def choose_uploader(self):
        """A function (source, target) -> None, or None (with the one warning) where there is nothing to write to."""
        target = self.target_dir
        if target.startswith(REMOTE_SCHEMES):
            try:
                import moxing  # pylint: disable=import-outside-toplevel
            except ImportError:
                logger.warning("ObsMonitor: %s needs ModelArts' moxing package, which is not installed: nothing is "
                               "uploaded; the outputs stay in the output folder", target)
                return None
            return lambda source, remote: moxing.file.copy_parallel(source, remote)
        if target.startswith("file://"):
            target = self.target_dir = target[len("file://"):]
        if os.path.isabs(target):
            return lambda source, local: mirror_folder(source, local, self.keep_last)
        logger.warning("ObsMonitor: no upload target (target_dir or remote_save_url is %r, not an obs:// or s3:// URL "
                       "or an absolute path): nothing is uploaded", self.target_dir)
        return None

    def on_train_begin(self, state):
        self.src_dir = self.src_dir or state.output_dir
        self.uploader = self.choose_uploader() if state.rank_id == self.rank_id else None

    def upload(self):
        if self.uploader is not None and os.path.isdir(self.src_dir):
            self.uploader(self.src_dir, self.target_dir)
            logger.info("ObsMonitor: uploaded %s to %s", self.src_dir, self.target_dir)

    def on_step_end(self, state):
        step_due = self.every_steps > 0 and state.global_step % self.every_steps == 0
        epoch_due = (self.every_epochs > 0 and state.step_in_epoch == state.steps_per_epoch
                     and state.epoch % self.every_epochs == 0)
        if step_due or epoch_due:
            self.upload()

    def on_train_end(self, state):
        self.upload()
