"""MFLossMonitor: per-step training log (loss, lr, grad norm, throughput, MFU, ETA) and a JSON-lines record."""
import json
import logging
import os
import time

from mindformers.core.callback.callback import Callback
from mindformers.core.flops import measure_gemm_peak_flops, train_flops_per_token
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister
from mindformers.tools.register.value_spec import FLOAT, POSITIVE_INT, Value

logger = logging.getLogger("mindformers")


def format_duration(seconds):
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}"


def describe_numbers(metrics):
    """' | aux_loss 0.0123 | dropped_tokens 4' for the single numbers of a step's model metrics (lists stay in
    the record)."""
    return "".join(f" | {name} {value:.6g}" for name, value in metrics.items()
                   if isinstance(value, (int, float)) and not isinstance(value, bool))


@MindFormerRegister.register(MindFormerModuleType.CALLBACK, value_specs={
    "per_print_times": POSITIVE_INT, "device_peak_tflops": Value(FLOAT, above=0)})
class MFLossMonitor(Callback):
    """Logs every `per_print_times` steps and appends every step to <output_dir>/log/train_metrics.jsonl
    (written by rank 0 only: in a data-parallel run the loss is averaged over ranks, so one record holds it).

    MFU divides achieved model FLOP/s per device by `device_peak_tflops` when given, else by the matmul
    peak measured once on this device at the start of training.
    """

    def __init__(self, per_print_times=1, learning_rate=None, micro_batch_num=1, micro_batch_interleave_num=1,
                 origin_epochs=None, dataset_size=None, initial_epoch=0, initial_step=0, global_batch_size=0,
                 gradient_accumulation_steps=1, check_for_nan_in_loss_and_grad=False, device_peak_tflops=None,
                 metrics_file=None):
        # Accepted so published MindFormers YAMLs load; the trainer hands the monitor these facts itself.
        del learning_rate, micro_batch_num, micro_batch_interleave_num, origin_epochs, dataset_size
        del initial_epoch, initial_step, global_batch_size, gradient_accumulation_steps
        self.per_print_times = int(per_print_times)
        self.check_for_nan = check_for_nan_in_loss_and_grad  # the trainer then stops at the first non-finite step
        self.device_peak_tflops = device_peak_tflops
        self.metrics_file = metrics_file
        self.peak_flops = None
        self.flops_per_token = 0.0
        self.step_times = []
        self.path = None

    def on_train_begin(self, state):
        self.path = self.metrics_file or os.path.join(state.output_dir, "log", "train_metrics.jsonl")
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        if state.initial_step == 0 and os.path.exists(self.path) and state.rank_id == 0:
            os.remove(self.path)  # a fresh run starts a fresh record; a resumed run appends to it
        self.flops_per_token = train_flops_per_token(state.model_config, state.seq_length)
        self.peak_flops = (self.device_peak_tflops * 1e12 if self.device_peak_tflops
                           else measure_gemm_peak_flops(sizes=(512, 1024), min_seconds=0.2))  # ~0.5 s at start

    def on_step_end(self, state):
        # The first step of a run includes graph compilation: leave it out of the ETA average.
        if state.global_step > state.initial_step + 1 or state.total_steps == state.initial_step + 1:
            self.step_times.append(state.step_time)
        recent = self.step_times[-20:] or [state.step_time]
        average = sum(recent) / len(recent)
        eta = average * (state.total_steps - state.global_step)
        tokens = state.global_batch_size * state.seq_length
        tokens_per_s = tokens / state.step_time if state.step_time > 0 else 0.0
        mfu = tokens_per_s * self.flops_per_token / state.world_size / self.peak_flops if self.peak_flops else 0.0
        record = {
            "step": state.global_step, "epoch": state.epoch, "step_in_epoch": state.step_in_epoch,
            "loss": state.loss, "lr": state.lr, "grad_norm": state.grad_norm, "loss_scale": state.loss_scale,
            "overflow": state.overflow, "step_time": state.step_time, "tokens_per_s": tokens_per_s,
            "mfu": mfu, "eta_s": eta, "time": time.time(),
        }
        record.update(state.step_metrics)  # the model's own numbers (MoE: aux_loss, dropped_tokens, expert_load)
        first_step = state.global_step == state.initial_step + 1
        if first_step:
            record["compile_time"] = state.compile_time
        state.extra["step_record"] = record  # for the callbacks after this one (TensorBoardMonitor)
        if state.rank_id == 0:  # the loss is already averaged over data-parallel ranks: one shared record
            with open(self.path, "a", encoding="utf-8") as stream:
                stream.write(json.dumps(record) + "\n")
        if first_step and state.rank_id == 0:
            logger.info("first step: %.1f s graph compilation + %.1f s run", state.compile_time, state.step_time)
        if state.global_step % self.per_print_times == 0 or state.global_step == state.total_steps:
            logger.info(
                "epoch %d/%d step %d/%d (global %d/%d) | loss %.6f%s | lr %.3e | grad_norm %.4f | scale %g%s | "
                "%.1f ms/step | %.0f tokens/s | MFU %.2f%% | ETA %s",
                state.epoch, state.epochs, state.step_in_epoch, state.steps_per_epoch, state.global_step,
                state.total_steps, state.loss, describe_numbers(state.step_metrics), state.lr, state.grad_norm,
                state.loss_scale, " (overflow, step skipped)" if state.overflow else "", state.step_time * 1000,
                tokens_per_s, mfu * 100, format_duration(eta))
