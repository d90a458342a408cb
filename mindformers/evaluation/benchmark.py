"""run_benchmark_task: one benchmark task on a model and tokenizer, its results written to
<output_dir>/eval_<task>_results.json (and each question's outcome to eval_<task>_predictions.jsonl)."""
import importlib
import json
import logging
import os

from mindformers.checkpoint.atomic import atomic_files
from mindformers.evaluation.runner import BenchmarkRun
from mindformers.tools.errors import ConfigError

logger = logging.getLogger("mindformers")

# Task name -> the module that reads its files and scores it (each has DEFAULT_MAX_NEW_TOKENS and evaluate()).
BENCHMARK_TASKS = {name: f"mindformers.evaluation.{name}"
                   for name in ("mmlu", "ceval", "boolq", "gsm8k", "bbh", "agieval", "human_eval")}


def task_module(task):
    if task not in BENCHMARK_TASKS:
        raise ConfigError(f"eval_task: unknown task {task!r} (expected one of {', '.join(BENCHMARK_TASKS)})")
    return importlib.import_module(BENCHMARK_TASKS[task])


def default_max_new_tokens(task):
    """The task's generation length in lm-evaluation-harness (max_gen_toks); unused by multiple-choice tasks."""
    return task_module(task).DEFAULT_MAX_NEW_TOKENS


def fitted_default(task, model):
    """The task's default max_new_tokens, at most half the model's context (lm-eval would refuse a model whose
    context is shorter than the default; here the prompt keeps the other half)."""
    default = default_max_new_tokens(task)
    seq_length = getattr(getattr(model, "config", None), "seq_length", None)
    if isinstance(seq_length, int) and default > seq_length // 2:
        logger.warning("%s: max_new_tokens %d (the task's default) lowered to %d, half of seq_length %d; pass "
                       "--max_new_tokens to choose", task, default, seq_length // 2, seq_length)
        return max(seq_length // 2, 1)
    return default


def check_positive(value, key):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{key}: expected a positive integer, got {value!r}")


def results_paths(output_dir, task):
    return (os.path.join(output_dir, f"eval_{task}_results.json"),
            os.path.join(output_dir, f"eval_{task}_predictions.jsonl"))


def load_benchmark(task, data_path):
    """The task's questions read from `data_path` (checked before any model is built: a wrong layout or a bad row
    is a one-line error, not a failure after minutes of loading)."""
    module = task_module(task)
    if not data_path or not os.path.exists(data_path):
        raise ConfigError(f"eval_data_path: {data_path or '(not set)'}: not found (expected {module.LAYOUT})")
    questions = module.load_questions(os.fspath(data_path))
    if not questions:
        raise ConfigError(f"eval_data_path: {data_path}: the {task} files hold no questions "
                          f"(expected {module.LAYOUT})")
    return questions


def run_benchmark_task(task, model, tokenizer, data_path, output_dir, batch_size=1, max_new_tokens=None,
                       questions=None):
    """Evaluate `model` (a causal LM of mindformers.models) on a benchmark task read from `data_path` (or on `questions`
    load_benchmark read from it); returns the results dict that is also written to
    <output_dir>/eval_<task>_results.json."""
    module = task_module(task)
    check_positive(batch_size, "evaluation_batch_size")
    if max_new_tokens is None:
        max_new_tokens = fitted_default(task, model)
    check_positive(max_new_tokens, "max_new_tokens")
    if questions is None:
        questions = load_benchmark(task, data_path)
    run = BenchmarkRun(task, model, tokenizer, batch_size, max_new_tokens)
    results, records = module.evaluate(run, questions)
    results["data_path"] = os.path.abspath(data_path)
    results_path, predictions_path = results_paths(os.path.abspath(output_dir), task)
    with atomic_files(results_path, predictions_path) as (results_tmp, predictions_tmp):
        with open(results_tmp, "w", encoding="utf-8") as stream:
            json.dump(results, stream, ensure_ascii=False, indent=2)
        with open(predictions_tmp, "w", encoding="utf-8") as stream:
            for record in records:
                stream.write(json.dumps(record, ensure_ascii=False) + "\n")
    logger.info("%s: accuracy %.4f over %d questions; results in %s", task, results["accuracy"],
                results["total"], results_path)
    return results
