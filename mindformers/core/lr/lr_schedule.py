"""Learning-rate schedules as MindSpore LearningRateSchedule cells: the optimizer evaluates them on its step."""
import math

import mindspore as ms
from mindspore import nn, ops

from mindformers.tools.errors import ConfigError
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister
from mindformers.tools.register.value_spec import FLOAT, INT, NON_NEGATIVE_NUMBER, Value

# The warmup schedules' arguments (CosineWithWarmUpLR adds num_cycles).
WARMUP_VALUES = {
    "learning_rate": NON_NEGATIVE_NUMBER, "warmup_steps": Value(INT, min=0), "warmup_ratio": Value(FLOAT, min=0, max=1),
    "total_steps": Value(INT, min=1, also={-1: "the whole run"}), "lr_end": NON_NEGATIVE_NUMBER,
    "warmup_lr_init": NON_NEGATIVE_NUMBER, "num_cycles": Value(FLOAT, min=0, nullable=False),
}


class WarmUpSchedule(nn.learning_rate_schedule.LearningRateSchedule):
    """Linear warmup from 0 to learning_rate over warmup steps, then `decay(progress)` to lr_end.

    warmup_steps wins over warmup_ratio; a ratio is of total_steps. total_steps -1/None means "the whole
    run", which the trainer fills in before building the schedule.
    """

    def __init__(self, learning_rate, warmup_steps=None, warmup_ratio=None, total_steps=None, lr_end=0.0,
                 warmup_lr_init=0.0):
        super().__init__()
        if total_steps is None or total_steps < 1:
            raise ConfigError(f"lr_schedule.total_steps: expected a positive step count, got {total_steps!r}")
        if warmup_steps is None:
            warmup_steps = int(total_steps * (warmup_ratio or 0.0))
        if warmup_steps < 0:
            raise ConfigError(f"lr_schedule.warmup_steps: expected >= 0, got {warmup_steps}")
        self.learning_rate = float(learning_rate)
        self.lr_end = float(lr_end)
        self.warmup_lr_init = float(warmup_lr_init)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.decay_steps = float(max(1, self.total_steps - self.warmup_steps))

    def decay(self, progress):
        """Multiplier in [0, 1] applied to (learning_rate - lr_end) after warmup; progress in [0, 1].
        Constant here; subclasses shape the decay."""
        return ops.ones_like(progress)

    def construct(self, global_step):
        step = ops.cast(global_step, ms.float32)
        warmup = self.warmup_lr_init + (self.learning_rate - self.warmup_lr_init) * step / max(1.0, float(self.warmup_steps))
        progress = ops.clip_by_value((step - self.warmup_steps) / self.decay_steps, 0.0, 1.0)
        decayed = self.lr_end + (self.learning_rate - self.lr_end) * self.decay(progress)
        return ops.select(step < self.warmup_steps, warmup, decayed)

    def value_at(self, step):
        """The learning rate at a 0-based optimizer step, as a Python float (for logs)."""
        return float(self.construct(ms.Tensor(step, ms.int32)).asnumpy())


@MindFormerRegister.register(MindFormerModuleType.LR, value_specs=WARMUP_VALUES)
class ConstantWarmUpLR(WarmUpSchedule):
    """Warmup, then learning_rate for the rest of the run."""


@MindFormerRegister.register(MindFormerModuleType.LR, value_specs=WARMUP_VALUES)
class LinearWithWarmUpLR(WarmUpSchedule):
    def decay(self, progress):
        return 1.0 - progress


@MindFormerRegister.register(MindFormerModuleType.LR, value_specs=WARMUP_VALUES)
class CosineWithWarmUpLR(WarmUpSchedule):
    def __init__(self, learning_rate, warmup_steps=None, warmup_ratio=None, total_steps=None, lr_end=0.0,
                 warmup_lr_init=0.0, num_cycles=0.5):
        super().__init__(learning_rate, warmup_steps, warmup_ratio, total_steps, lr_end, warmup_lr_init)
        self.num_cycles = float(num_cycles)

    def decay(self, progress):
        return 0.5 * (1.0 + ops.cos(math.pi * 2.0 * self.num_cycles * progress))
