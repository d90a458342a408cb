"""How a training run stops when something goes wrong, so that it loses nothing.

- SIGTERM (a scheduler, msrun) or Ctrl-C: the step in progress finishes, a checkpoint of it is saved, and the run
  exits with 128 + the signal number. A second Ctrl-C stops at once.
- A loss or gradient norm that is not finite for `runner_config.max_nonfinite_steps` consecutive steps stops the
  run (exit 1); those steps are never saved, so the newest checkpoint is the last good state.
"""
import contextlib
import logging
import math
import signal
import threading

from mindspore import nn

from mindformers.tools.errors import RunFault

logger = logging.getLogger("mindformers")

DEFAULT_MAX_NONFINITE_STEPS = 5


class StopRequests:
    """Context manager: while active, SIGTERM and SIGINT are recorded (`signal_number`) instead of interrupting a
    step half-way; the loop checks `requested` between steps."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signal_number = None
        self.previous = {}

    @property
    def requested(self):
        return self.signal_number is not None

    def _record(self, number, _frame):
        if number == signal.SIGINT and self.signal_number == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: the user does not want to wait for the step and the save
        if self.signal_number is None:
            logger.warning("%s received: finishing the current step, then saving a checkpoint and stopping "
                           "(Ctrl-C again to stop at once)", signal.Signals(number).name)
        self.signal_number = number

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
            for number in self.SIGNALS:
                self.previous[number] = signal.signal(number, self._record)
        return self

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(number, handler)
        self.previous = {}
        return False


class NonFiniteGuard:
    """Counts consecutive steps whose loss, or gradient norm, is not finite. An overflowing gradient norm while a
    dynamic loss scale can still be lowered is the loss scale's business (it skips the step and halves), not a
    fault; the loss itself being NaN/inf always is."""

    def __init__(self, max_steps, train_cell):
        self.max_steps = int(max_steps)
        manager = getattr(train_cell, "loss_scale_manager", None)
        self.dynamic_scale = isinstance(manager, nn.DynamicLossScaleUpdateCell)
        self.first_bad_step = None

    def is_nonfinite(self, state):
        if not math.isfinite(state.loss):
            return True
        if math.isfinite(state.grad_norm):
            return False
        return not (self.dynamic_scale and state.loss_scale > 1.0)

    def check(self, state):
        """Update state.nonfinite_steps after a step; True when the run must stop."""
        if not self.is_nonfinite(state):
            state.nonfinite_steps, self.first_bad_step = 0, None
            return False
        state.nonfinite_steps += 1
        self.first_bad_step = self.first_bad_step or state.global_step
        logger.warning("step %d: loss %s, gradient norm %s (non-finite step %d of at most %d in a row)",
                       state.global_step, state.loss, state.grad_norm, state.nonfinite_steps, self.max_steps)
        return state.nonfinite_steps >= self.max_steps

    def fault(self, state, newest_checkpoint):
        kept = (f"the last good checkpoint, {newest_checkpoint}, is kept" if newest_checkpoint
                else "this run saved no checkpoint before it")
        return RunFault(f"runner_config.max_nonfinite_steps: the loss or gradient norm was not finite for "
                        f"{state.nonfinite_steps} steps in a row (steps {self.first_bad_step}-{state.global_step}); "
                        f"stopped; {kept} (lower the learning rate, or raise max_nonfinite_steps)")


def newest_saved_checkpoint(callbacks):
    """The checkpoint this run saved last, whichever callback saved it (None when none did)."""
    saved = [getattr(callback, "last_saved_path", None) for callback in callbacks]
    saved = [path for path in saved if path]
    return saved[-1] if saved else None
