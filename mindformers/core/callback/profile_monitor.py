"""ProfileMonitor: MindSpore's profiler over a window of training steps (--profile)."""
import logging
import os

import mindspore as ms

from mindformers.core.callback.callback import Callback
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister
from mindformers.tools.register.value_spec import POSITIVE_INT

logger = logging.getLogger("mindformers")


@MindFormerRegister.register(MindFormerModuleType.CALLBACK, value_specs={"start_step": POSITIVE_INT,
                                                                       "stop_step": POSITIVE_INT})
class ProfileMonitor(Callback):
    """Profiles steps [start_step, stop_step] into `output_path` (default <output_dir>/profile/rank_<r>)."""

    def __init__(self, start_step=1, stop_step=10, output_path=None, profile_memory=False,
                 profile_communication=False):
        self.profile_communication = bool(profile_communication)  # collective timings: Ascend clusters only
        self.start_step = int(start_step)
        self.stop_step = int(stop_step)
        self.output_path = output_path
        self.profile_memory = profile_memory
        self.profiler = None
        self.path = None

    def on_train_begin(self, state):
        first_step = state.initial_step + 1
        if first_step > self.stop_step:
            return  # resumed past the window: nothing to profile
        self.path = self.output_path or os.path.join(state.output_dir, "profile", f"rank_{state.rank_id}")
        os.makedirs(self.path, exist_ok=True)
        options = {"profile_communication": True} if self.profile_communication and \
            ms.get_context("device_target") == "Ascend" else {}
        self.profiler = ms.Profiler(start_profile=False, output_path=self.path, profile_memory=self.profile_memory,
                                    **options)
        if self.start_step <= first_step:
            self.profiler.start()

    def on_step_end(self, state):
        if self.profiler is None:
            return
        if state.global_step + 1 == self.start_step:
            self.profiler.start()
        if state.global_step == self.stop_step:
            self.finish()

    def on_train_end(self, state):
        if self.profiler is not None:
            self.finish()

    def finish(self):
        self.profiler.stop()
        self.profiler.analyse()
        logger.info("profile of steps %d-%d written to %s", self.start_step, self.stop_step, self.path)
        self.profiler = None
