"""run_mode eval with `eval_task` (--eval_task): a benchmark of mindformers.evaluation (MMLU, C-Eval, BoolQ,
GSM8K, BBH, AGIEval, HumanEval) run on the YAML's model with --load_checkpoint weights, built as predict builds
them. The task reads its files from eval_data_path and writes its own result files under output_dir."""
import logging
import os

from mindformers.parallel.world import rank_and_size
from mindformers.tools.errors import ConfigError
from mindformers.trainer.evaluate import eval_batch_size
from mindformers.trainer.inference_model import build_inference_model

logger = logging.getLogger("mindformers")


def benchmark_functions():
    """mindformers.evaluation's load_benchmark and run_benchmark_task, imported only when a task is asked for."""
    try:
        from mindformers.evaluation import load_benchmark, run_benchmark_task  # pylint: disable=import-outside-toplevel
    except ModuleNotFoundError as error:
        if error.name != "mindformers.evaluation":
            raise
        raise ConfigError("eval_task: this build has no benchmark tasks (the mindformers.evaluation package is "
                          "missing)") from None
    return load_benchmark, run_benchmark_task


def task_output_dir(config):
    """output_dir; for ranks other than 0 of a parallel run (which compute the same answers) rank_<r>/ inside it, so
    no two processes write one file."""
    output_dir = os.path.abspath(config.get("output_dir") or "./output")
    rank = rank_and_size()[0]
    return output_dir if rank == 0 else os.path.join(output_dir, f"rank_{rank}")


def run_eval_task(config):
    """Runs the benchmark named by eval_task and returns its results dict."""
    task = config.get("eval_task")
    data_path = config.get("eval_data_path")
    if not data_path:
        raise ConfigError(f"eval_data_path: eval_task {task} reads the benchmark's files from a local folder or "
                          "file; pass --eval_data_path")
    batch_size = eval_batch_size(config)
    load_benchmark, run_benchmark_task = benchmark_functions()
    data_path = os.path.expanduser(str(data_path))
    questions = load_benchmark(task, data_path)  # a wrong layout fails here, before the model is built
    _, network, tokenizer = build_inference_model(config, f"eval_task {task}", need_checkpoint=True)
    results = run_benchmark_task(task=task, model=network, tokenizer=tokenizer, data_path=data_path,
                                 output_dir=task_output_dir(config),
                                 batch_size=batch_size, max_new_tokens=config.get("max_new_tokens"),
                                 questions=questions)
    logger.info("%s = %s", task, results)
    return results
