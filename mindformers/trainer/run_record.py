"""What a run leaves behind for later looking besides its logs: <output_dir>/log/run_info.json (the model, the run's
shape and the whole resolved config; `python -m mindformers.tools.report` reads it) and, with a `tensorboard`
section, evaluation results as TensorBoard scalars."""
import json
import logging
import os

from mindformers.checkpoint.atomic import atomic_files
from mindformers.tools.errors import MindFormerUserError

logger = logging.getLogger("mindformers")

RUN_INFO = os.path.join("log", "run_info.json")


def run_info(config, state, network, model_name):
    return {
        "model_name": model_name, "parameters": int(network.num_parameters()),
        "trainable_parameters": int(sum(p.size for p in network.trainable_params())),
        "epochs": state.epochs, "steps_per_epoch": state.steps_per_epoch, "total_steps": state.total_steps,
        "global_batch_size": state.global_batch_size, "seq_length": state.seq_length,
        "world_size": state.world_size, "initial_step": state.initial_step, "config": config.to_dict(),
    }


def write_run_info(output_dir, info):
    path = os.path.join(output_dir, RUN_INFO)
    with atomic_files(path) as (tmp_path,):
        with open(tmp_path, "w", encoding="utf-8") as stream:
            json.dump(info, stream, indent=2, default=str)
            stream.write("\n")
    return path


def read_run_info(output_dir):
    """The run's run_info.json, or None when the run wrote none."""
    path = os.path.join(output_dir, RUN_INFO)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def checkpoint_step(config):
    """The global training step saved in the --load_checkpoint file (our checkpoints hold step_num), else 0."""
    from mindformers.checkpoint.checkpoint_io import resolve_checkpoint  # pylint: disable=import-outside-toplevel
    from mindformers.checkpoint.ckpt_stream import read_ckpt  # pylint: disable=import-outside-toplevel
    source = config.get("load_checkpoint")
    try:
        path = resolve_checkpoint(source, 0) if source else ""
        info = read_ckpt(path).get("step_num") if path.endswith(".ckpt") else None  # indexes the file, reads one
        return int(info.read().reshape(-1)[0]) if info is not None else 0
    except (MindFormerUserError, OSError) as error:  # the results are written already: do not fail the run here
        logger.warning("TensorBoard eval scalars at step 0: no training step found in %s (%s)", source, error)
        return 0


def record_eval_results(config, results):
    """With a `tensorboard` section: the results as eval/... scalars at the evaluated checkpoint's step."""
    if config.get("tensorboard") is None:
        return
    from mindformers.core.callback.tensorboard_monitor import write_eval_scalars  # noqa: E501 pylint: disable=import-outside-toplevel
    write_eval_scalars(config.get("tensorboard"), os.path.abspath(config.get("output_dir") or "./output"), results,
                       checkpoint_step(config))
