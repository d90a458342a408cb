"""CausalLanguageModelingTrainer: builds every part of a training run from the config and runs the loop."""
import contextlib
import logging
import os
import signal
import time

import mindspore as ms
from mindspore import Tensor

from mindformers.checkpoint.checkpoint_io import scalar
from mindformers.core.callback import ProfileMonitor, TensorBoardMonitor, TrainState
from mindformers.models.decoder.config import run_model_arguments, run_model_section
from mindformers.models.decoder.layerwise import compile_layerwise, layerwise_enabled
from mindformers.models.modules.shape_only import initial_values_deferred
from mindformers.models.tokenization_utils import check_tokenizer_fits_model
from mindformers.parallel import ParallelSettings, check_parallel_config
from mindformers.parallel.groups import init_parallel_groups
from mindformers.parallel.optimizer_shard import DataParallelShardedOptimizer, sharded_state_names
from mindformers.parallel.layout_file import layout_record
from mindformers.parallel.mesh import rank_coordinates
from mindformers.parallel.parallelize import parallelize
from mindformers.parallel.pipeline_stage import cut_to_stage
from mindformers.parallel.parallel_check import rank_batch_size
from mindformers.parallel.world import data_parallel_rank, rank_and_size
from mindformers.pet import apply_pet
from mindformers.tools.errors import ConfigError, DataError, RunInterrupted
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister, build_from_config
from mindformers.tools.register.validate import check_train_sections
from mindformers.trainer.checkpoint_loading import load_checkpoint_for
from mindformers.trainer.fault_handling import (DEFAULT_MAX_NONFINITE_STEPS, NonFiniteGuard, StopRequests,
                                                newest_saved_checkpoint)
from mindformers.trainer.run_record import record_eval_results, run_info, write_run_info
from mindformers.wrapper.pipeline_train_step import build_pipeline_wrapper

logger = logging.getLogger("mindformers")


def compile_seconds(cell, inputs):
    """Seconds graph mode spends compiling `cell` for `inputs` (0 in PyNative), so the log can tell the first
    step's compilation from its run."""
    if ms.get_context("mode") != ms.GRAPH_MODE:
        return 0.0
    start = time.perf_counter()
    cell.compile(*inputs)
    return time.perf_counter() - start


def is_enabled(flag):
    """resume_training is True/False or a checkpoint file name (which also means True)."""
    if isinstance(flag, str):
        return flag not in ("", "False", "false", "0", "None")
    return bool(flag)


def build_model_config(config):
    """The model's config object (sizes, numerics) from model.model_config, without building the network."""
    model = config.get("model") or {}
    if not model.get("model_config") or not model.get("arch"):
        raise ConfigError(f"{config.where()}: model: expected model.model_config and model.arch sections")
    return build_from_config(run_model_section(config), MindFormerModuleType.CONFIG,
                             default_args=run_model_arguments(config),
                             where="model.model_config")


def build_network(config, groups=None):
    """(model config, network): the plain model the YAML describes, with its adapters (pet_config), split for this
    rank of `groups` (CPU model / sequence / expert parallelism; None: kept whole)."""
    model = config.get("model") or {}
    model_config = build_model_config(config)
    # A rank that splits the model draws only its slices of the initial weights (when parallelize runs).
    with initial_values_deferred() if groups is not None else contextlib.nullcontext():
        network = build_from_config(model["arch"], MindFormerModuleType.MODELS,
                                    default_args={"config": model_config,
                                                  "recompute_config": config.get("recompute_config")},
                                    where="model.arch")
    if getattr(model_config, "pet_config", None):
        network = apply_pet(network, model_config.pet_config)  # LoRA / prefix tuning: base weights frozen
    if groups is not None:  # after the adapters: they split with their layers
        parallelize(network, groups)
    return model_config, network


def tokenizer_file_key(tokenizer):
    """The key naming the tokenizer's file: vocab_file (sentencepiece, or --vocab_file) or tokenizer_file (Llama 3)."""
    for key in ("vocab_file", "tokenizer_file"):
        if tokenizer.get(key):
            return key
    return None


def build_tokenizer(config):
    """The tokenizer of processor.tokenizer, or None when the config names no tokenizer file."""
    tokenizer = (config.get("processor") or {}).get("tokenizer")
    key = tokenizer_file_key(tokenizer) if tokenizer else None
    if key is None:
        return None
    if not os.path.exists(str(tokenizer[key])):
        raise ConfigError(f"processor.tokenizer.{key}: file not found: {tokenizer[key]}")
    return build_from_config(tokenizer, MindFormerModuleType.TOKENIZER, where="processor.tokenizer")


def build_callback_list(config, list_key):
    """The callbacks of `callbacks` (training) or `eval_callbacks` (run_mode eval); a callback class's
    CONFIG_DEFAULTS names run-config keys that fill arguments the entry leaves out (ObsMonitor's remote_save_url)."""
    callbacks = []
    for index, item in enumerate(config.get(list_key) or []):
        where = f"{list_key}[{index}]"
        cls = MindFormerRegister.get_cls(MindFormerModuleType.CALLBACK, (item or {}).get("type"), where=f"{where}.type")
        defaults = {arg: config.get(key) for arg, key in getattr(cls, "CONFIG_DEFAULTS", {}).items()}
        callbacks.append(build_from_config(item, MindFormerModuleType.CALLBACK, default_args=defaults, where=where))
    return callbacks


@MindFormerRegister.register(MindFormerModuleType.TRAINER)
class CausalLanguageModelingTrainer:
    """Pretraining of causal language models (Llama family) from packed MindRecord rows."""

    def __init__(self, config, model_name=None):
        self.config = config
        self.model_name = model_name or "llama"
        self.rank_id = 0
        self.world_size = 1
        self.parallel = ParallelSettings()  # single process unless use_parallel
        self.groups = None  # CPU: this rank's communication groups (setup_parallel)
        self.data_rank, self.data_ranks = 0, 1  # which share of each global batch this process reads

    def run(self, run_mode):
        if run_mode == "predict":
            return self.predict()
        if run_mode == "eval":
            return self.evaluate()
        if run_mode == "finetune":
            if not self.config.get("load_checkpoint") and not is_enabled(self.config.get("resume_training")):
                raise ConfigError("load_checkpoint: run_mode finetune starts from pretrained weights; pass "
                                  "--load_checkpoint (a checkpoint file or folder)")
            return self.train()
        if run_mode != "train":
            raise ConfigError(f"run_mode: expected one of train, finetune, eval, predict, got {run_mode!r}")
        return self.train()

    def predict(self):
        from mindformers.trainer.predict import predict  # pylint: disable=import-outside-toplevel
        return predict(self.config)

    def evaluate(self):
        """The YAML's metric(s) over the eval dataset, or with eval_task a benchmark from mindformers.evaluation."""
        if self.config.get("eval_task"):
            from mindformers.trainer.eval_task import run_eval_task  # pylint: disable=import-outside-toplevel
            results = run_eval_task(self.config)
        else:
            from mindformers.trainer.evaluate import evaluate  # pylint: disable=import-outside-toplevel
            results = evaluate(self.config)
        record_eval_results(self.config, results)
        return results

    # ---- building -------------------------------------------------------------------------------------------
    def runner_settings(self):
        runner = self.config.get("runner_config") or {}
        # null means "the default"; 0 or less was refused with the config (nothing is replaced here)
        epochs = int(1 if runner.get("epochs") is None else runner["epochs"])
        batch_size = next((value for value in (runner.get("batch_size"),
                                               (self.config.get("train_dataset") or {}).get("batch_size"))
                           if value is not None), 1)
        if runner.get("global_batch_size") is not None:
            batch_size = rank_batch_size(self.config, self.parallel)
        accumulation = int(1 if runner.get("gradient_accumulation_steps") is None
                           else runner["gradient_accumulation_steps"])
        for key, value in (("epochs", epochs), ("batch_size", batch_size), ("gradient_accumulation_steps",
                                                                             accumulation)):
            if value < 1:
                raise ConfigError(f"runner_config.{key}: expected a positive integer, got {value}")
        return epochs, int(batch_size), accumulation

    def build_dataset(self, batch_size):
        task = self.config.get("train_dataset_task")
        if not task:
            raise ConfigError(f"{self.config.where()}: train_dataset_task: missing section")
        dataset_config = self.config.get("train_dataset") or task.get("dataset_config")
        task = {key: value for key, value in task.items() if key != "dataset_config"}
        return build_from_config(task, MindFormerModuleType.DATASET,
                                 default_args={"dataset_config": dataset_config, "batch_size": batch_size,
                                               "seed": int(self.config.get("seed") or 0), "rank_id": self.data_rank,
                                               "rank_size": self.data_ranks},
                                 where="train_dataset_task")

    def build_lr_schedule(self, total_steps):
        schedule = self.config.get("lr_schedule")
        if not schedule:
            return None
        schedule = dict(schedule)
        if schedule.get("total_steps") in (None, -1):
            schedule["total_steps"] = total_steps
        return build_from_config(schedule, MindFormerModuleType.LR, where="lr_schedule")

    def build_optimizer(self, network, lr_schedule):
        optimizer = dict(self.config.get("optimizer") or {"type": "AdamW"})
        if lr_schedule is not None:
            optimizer["learning_rate"] = lr_schedule

        def build(params):
            return build_from_config(optimizer, MindFormerModuleType.OPTIMIZER, default_args={"params": params},
                                     where="optimizer")
        if self.parallel.optimizer_shards > 1 and \
                ms.get_auto_parallel_context("parallel_mode") == ms.ParallelMode.STAND_ALONE:
            # CPU: each data-parallel rank updates its slice of the optimizer state (on Ascend MindSpore does).
            return DataParallelShardedOptimizer(network.trainable_params(), build,
                                                sharded_state_names(network, self.parallel), self.groups)
        return build(network.trainable_params())

    def build_wrapper(self, network, optimizer, accumulation):
        wrapper = dict(self.config.get("runner_wrapper") or {"type": "MFTrainOneStepCell", "use_clip_grad": False})
        scale_sense = wrapper.get("scale_sense")
        if isinstance(scale_sense, dict):
            wrapper["scale_sense"] = build_from_config(scale_sense, MindFormerModuleType.LOSS_SCALE,
                                                       where="runner_wrapper.scale_sense")
        if self.runs_pipeline():
            return build_pipeline_wrapper(wrapper, network, optimizer, self.parallel, self.rank_id, accumulation)
        return build_from_config(wrapper, MindFormerModuleType.WRAPPER,
                                 default_args={"network": network, "optimizer": optimizer,
                                               "gradient_accumulation_steps": accumulation},
                                 where="runner_wrapper")

    def build_callbacks(self):
        callbacks = build_callback_list(self.config, "callbacks")
        if self.config.get("tensorboard") is not None:  # after the YAML's callbacks: it plots MFLossMonitor's record
            callbacks.append(TensorBoardMonitor(**(self.config.get("tensorboard") or {})))
        if self.config.get("profile"):  # init_start_profile: from the first step, whatever profile_start_step says
            start = 1 if self.config.get("init_start_profile") else self.config.get("profile_start_step") or 1
            callbacks.append(ProfileMonitor(start_step=start, stop_step=self.config.get("profile_stop_step") or 10,
                                            output_path=self.config.get("profile_output") or None,
                                            profile_memory=bool(self.config.get("profile_memory")),
                                            profile_communication=bool(self.config.get("profile_communication"))))
        return callbacks

    def runs_pipeline(self):
        """Pipeline stages driven by this process (CPU); on Ascend semi-auto parallel MindSpore runs them."""
        return self.parallel.pipeline_stage > 1 and \
            ms.get_auto_parallel_context("parallel_mode") == ms.ParallelMode.STAND_ALONE

    def with_micro_batches(self, batch_size, accumulation):
        """(rows per micro step, micro steps per step). With pipeline stages batch_size is one micro-batch's
        (MindFormers) and a step reads micro_batch_num of them: on CPU they are the pipeline's micro-batches, under
        semi-auto parallel (Ascend) MindSpore's pipeline splits the batch itself."""
        if self.parallel.pipeline_stage == 1:
            return batch_size, accumulation
        if self.runs_pipeline():
            return batch_size, accumulation * self.parallel.micro_batch_num
        return batch_size * self.parallel.micro_batch_num, accumulation

    def setup_parallel(self):
        """use_parallel: rank, world size and mesh, with every parallel check made before the network is built."""
        self.rank_id, self.world_size = rank_and_size()
        model_config = build_model_config(self.config)
        self.parallel = check_parallel_config(self.config, model_config, self.world_size,
                                              ms.get_context("device_target"))
        if not (self.parallel.full_batch and ms.get_context("device_target") != "CPU"):
            # CPU data parallelism: each replica reads its own rows (full_batch only matters to semi-auto parallel).
            self.data_rank = data_parallel_rank(self.rank_id, self.parallel)
            self.data_ranks = self.parallel.data_parallel
        if ms.get_auto_parallel_context("parallel_mode") == ms.ParallelMode.STAND_ALONE:
            # CPU: the layers and the train step carry their own model- and data-parallel collectives.
            self.groups = init_parallel_groups(self.parallel, self.rank_id)

    def restore(self, train_cell, network):
        """Resume (weights + optimizer + loss scale + position) or plain weight loading; returns the global step."""
        if is_enabled(self.config.get("resume_training")):
            tensors = load_checkpoint_for(network, self.config, self.parallel, self.rank_id, resume_cell=train_cell,
                                          source=os.path.join(self.output_dir, "checkpoint"))
            step = int(scalar(tensors, "step_num", 0))
            logger.info("resuming at global step %d", step)
            return step
        load_checkpoint_for(network, self.config, self.parallel, self.rank_id)
        return 0

    # ---- the loop -------------------------------------------------------------------------------------------
    def max_nonfinite_steps(self, callbacks):
        """runner_config.max_nonfinite_steps; 1 when a loss monitor asks for MindFormers'
        check_for_nan_in_loss_and_grad."""
        if any(getattr(callback, "check_for_nan", False) for callback in callbacks):
            return 1
        return (self.config.get("runner_config") or {}).get("max_nonfinite_steps") or DEFAULT_MAX_NONFINITE_STEPS

    @staticmethod
    def loop(state, dataset, train_cell, optimizer, lr_schedule, callbacks, guard, stop, model_metrics):
        """Train from state.global_step to the end, or until a stop is requested or the loss stays non-finite.
        `model_metrics` reads the numbers a model returns beside the step's loss (a mixture of experts' router load
        and auxiliary loss) into state.step_metrics."""
        steps_per_epoch, initial_step = state.steps_per_epoch, state.global_step
        for epoch in range(initial_step // steps_per_epoch, state.epochs):
            skip = initial_step - epoch * steps_per_epoch if epoch == initial_step // steps_per_epoch else 0
            for step_in_epoch, batch in enumerate(dataset.epoch_iterator(epoch, skip), start=skip + 1):
                lr_step = int(optimizer.global_step.asnumpy().reshape(-1)[0])
                labels = Tensor(batch["labels"]) if "labels" in batch else None
                inputs = (Tensor(batch["input_ids"]), labels)
                if state.global_step == initial_step:
                    state.compile_time = compile_seconds(train_cell, inputs)
                start = time.perf_counter()
                loss, overflow, scale, grad_norm, *metrics = train_cell(*inputs)
                state.loss = float(loss.asnumpy())
                if metrics:
                    state.step_metrics = model_metrics(metrics[0].asnumpy())
                state.step_time = time.perf_counter() - start
                if state.global_step == initial_step and getattr(train_cell, "layerwise_graphs", None) is not None:
                    # layerwise_compile traces its layer graphs inside the first step: the log shows them apart
                    state.compile_time = train_cell.layerwise_graphs.trace_seconds
                    state.step_time -= state.compile_time
                state.overflow = bool(overflow.asnumpy())
                state.loss_scale = float(scale.asnumpy())
                state.grad_norm = float(grad_norm.asnumpy())
                state.lr = lr_schedule.value_at(lr_step) if lr_schedule is not None else float(
                    optimizer.get_lr().asnumpy())
                state.global_step += 1
                state.epoch, state.step_in_epoch = epoch + 1, step_in_epoch
                must_stop = guard.check(state)
                for callback in callbacks:
                    callback.on_step_end(state)
                if must_stop or stop.requested:
                    return

    @staticmethod
    def finish(state, callbacks):
        for callback in callbacks:
            callback.on_train_end(state)

    @staticmethod
    def saved_words(callbacks):
        newest = newest_saved_checkpoint(callbacks)
        return f"saved {newest}" if newest else "nothing saved (no CheckpointMonitor in callbacks)"

    def remove_interrupted_saves(self, callbacks):
        for callback in callbacks:
            if hasattr(callback, "remove_interrupted_saves"):
                callback.remove_interrupted_saves(self.output_dir, self.rank_id)

    def train(self):
        config = self.config
        check_train_sections(config)
        if config.get("use_parallel"):
            self.setup_parallel()
        self.output_dir = os.path.abspath(config.get("output_dir") or "./output")
        epochs, batch_size, accumulation = self.runner_settings()
        callbacks = self.build_callbacks()
        self.remove_interrupted_saves(callbacks)  # first: a start killed while building leaves the least behind
        batch_size, accumulation = self.with_micro_batches(batch_size, accumulation)
        model_config, network = build_network(config, self.groups)
        if self.runs_pipeline():
            network = cut_to_stage(network, self.parallel, rank_coordinates(self.rank_id, self.parallel.mesh())[0])
        if ms.get_auto_parallel_context("parallel_mode") != ms.ParallelMode.STAND_ALONE:
            from mindformers.parallel.ascend_parallel import apply_shard_strategies  # noqa: E501 pylint: disable=import-outside-toplevel
            apply_shard_strategies(network, self.parallel)
        tokenizer = build_tokenizer(config)
        if tokenizer is not None:
            check_tokenizer_fits_model(tokenizer, model_config.vocab_size,
                                       f"processor.tokenizer.{tokenizer_file_key(config.processor.tokenizer)}")
        dataset = self.build_dataset(batch_size * accumulation)
        if dataset.seq_length != model_config.seq_length + 1:
            raise ConfigError(
                f"train_dataset.data_loader.dataset_dir: rows hold {dataset.seq_length} tokens, but "
                f"model.model_config.seq_length is {model_config.seq_length} (expected rows of "
                f"{model_config.seq_length + 1}: preprocess with --seq_length {model_config.seq_length})")
        steps_per_epoch = dataset.steps_per_epoch
        if steps_per_epoch < 1:
            raise ConfigError(f"train_dataset: {dataset.num_rows} rows give no full batch of "
                              f"{batch_size * accumulation} (runner_config.batch_size x gradient_accumulation_steps)")
        total_steps = steps_per_epoch * epochs
        lr_schedule = self.build_lr_schedule(total_steps)
        optimizer = self.build_optimizer(network, lr_schedule)
        train_cell = self.build_wrapper(network, optimizer, accumulation)
        initial_step = self.restore(train_cell, network)
        train_cell.set_train(True)
        if layerwise_enabled(config):  # last: the layers' structure (after PET, freezing, loading) is final now
            compile_layerwise(network, train_cell)

        state = TrainState(train_cell=train_cell, model_config=model_config, output_dir=self.output_dir,
                           rank_id=self.rank_id, world_size=self.world_size, steps_per_epoch=steps_per_epoch,
                           total_steps=total_steps, epochs=epochs,
                           global_batch_size=batch_size * accumulation * self.parallel.data_parallel,
                           seq_length=model_config.seq_length, global_step=initial_step,
                           initial_step=initial_step)
        state.extra["layout"] = layout_record(network, self.parallel, self.rank_id)
        state.extra["run_info"] = run_info(config, state, network, self.model_name)
        if self.rank_id == 0:
            write_run_info(self.output_dir, state.extra["run_info"])
        if initial_step:
            state.epoch = (initial_step - 1) // steps_per_epoch + 1
            state.step_in_epoch = (initial_step - 1) % steps_per_epoch + 1
        logger.info("training %s: %.2fM parameters, %d epochs x %d steps, global batch %d, seq %d",
                    self.model_name, network.num_parameters() / 1e6, epochs, steps_per_epoch,
                    state.global_batch_size, model_config.seq_length)
        guard = NonFiniteGuard(self.max_nonfinite_steps(callbacks), train_cell)
        for callback in callbacks:
            callback.on_train_begin(state)
        with StopRequests() as stop:
            try:
                self.loop(state, dataset, train_cell, optimizer, lr_schedule, callbacks, guard, stop,
                          lambda values: network.step_metrics(values, accumulation))
            except DataError as error:  # a data file removed or changed under the run: keep what was trained
                self.finish(state, callbacks)
                raise DataError(f"{error}; stopped before step {state.global_step + 1}; "
                                f"{self.saved_words(callbacks)}") from None
            if stop.requested:
                self.finish(state, callbacks)
                name = signal.Signals(stop.signal_number).name
                raise RunInterrupted(f"{name} at step {state.global_step} of {total_steps}; "
                                     f"{self.saved_words(callbacks)}; resume with --resume_training True",
                                     stop.signal_number)
            if state.nonfinite_steps >= guard.max_steps:
                self.finish(state, callbacks)
                raise guard.fault(state, newest_saved_checkpoint(callbacks))
        self.finish(state, callbacks)
        return state
