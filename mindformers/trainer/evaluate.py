"""run_mode eval: the YAML `metric` (one mapping or a list) over the eval dataset, with --load_checkpoint weights.

Each result is logged as MindFormers prints it (`PerplexityMetric = {'PerplexityMetric': {'loss': ..., 'PPL': ...}}`)
and all of them are written to <output_dir>/eval_results.json. Metrics that score the model's predictions of the
rows' tokens (PerplexityMetric) get `update(logits, labels, input_mask)`; metrics that score generated text
(`generates = True`, EmF1Metric) get `update(predictions, golds)` from eval_generation.
"""
import json
import logging
import os

import numpy as np
from mindspore import Tensor

from mindformers.checkpoint.atomic import atomic_files
from mindformers.tools.errors import ConfigError
from mindformers.tools.register import MindFormerModuleType, build_from_config
from mindformers.core.callback import TrainState
from mindformers.trainer.causal_language_modeling import build_callback_list, build_model_config
from mindformers.trainer.eval_generation import AnswerGenerator, check_answer_rows
from mindformers.trainer.inference_model import build_inference_model, writes_outputs

logger = logging.getLogger("mindformers")

RESULTS_NAME = "eval_results.json"
SECTION = "eval_dataset"
DATASET_DIR_KEY = f"{SECTION}.data_loader.dataset_dir"


def metric_sections(config):
    """[(key path, section)] of `metric`: one mapping or a list of them."""
    metric = config.get("metric")
    if not metric:
        raise ConfigError(f"{config.where()}: metric: missing (expected e.g. `metric: {{type: PerplexityMetric}}`, "
                          "or a list of such mappings)")
    if isinstance(metric, dict):
        return [("metric", metric)]
    return [(f"metric[{index}]", item) for index, item in enumerate(metric)]


def build_metrics(config):
    """{type name: metric} in the YAML's order, each built from the registry and cleared."""
    metrics = {}
    for where, section in metric_sections(config):
        if not isinstance(section, dict):
            raise ConfigError(f"{where}: expected a mapping with 'type', got {section!r}")
        name = section.get("type")
        if name in metrics:
            raise ConfigError(f"{where}.type: {name} is listed twice (results are keyed by metric type)")
        metric = build_from_config(section, MindFormerModuleType.METRIC, where=where)
        metric.clear()
        metrics[name] = metric
    return metrics


def positive_int(value, key):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}: expected a positive integer, got {value!r}")
    return value


def eval_batch_size(config):
    """evaluation_batch_size (--evaluation_batch_size), else runner_config.batch_size (--batch_size, MindFormers'
    way), else eval_dataset.batch_size, else 1."""
    for key, value in (("evaluation_batch_size", config.get("evaluation_batch_size")),
                       ("runner_config.batch_size", (config.get("runner_config") or {}).get("batch_size")),
                       (f"{SECTION}.batch_size", (config.get(SECTION) or {}).get("batch_size"))):
        if value is not None:
            return positive_int(value, key)
    return 1


def build_eval_dataset(config, batch_size):
    """The rows of eval_dataset (built by eval_dataset_task, CausalLanguageModelDataset by default), every row
    once, in file order."""
    task = dict(config.get("eval_dataset_task") or {"type": "CausalLanguageModelDataset"})
    dataset_config = config.get(SECTION) or task.get("dataset_config")
    if not dataset_config:
        raise ConfigError(f"{config.where()}: {SECTION}: missing section (expected {DATASET_DIR_KEY} naming the "
                          "MindRecord rows to evaluate; pass --eval_dataset_dir)")
    dataset_config = dict(dataset_config)
    loader = dataset_config.get("data_loader")
    if isinstance(loader, dict):
        if not loader.get("dataset_dir"):
            raise ConfigError(f"{DATASET_DIR_KEY}: missing (expected the MindRecord file or folder of rows to "
                              "evaluate; pass --eval_dataset_dir)")
        # Scores do not depend on the order; file order makes runs and their logs comparable.
        dataset_config["data_loader"] = {"type": "MindDataset", **loader, "shuffle": False}
    task.pop("dataset_config", None)
    return build_from_config(task, MindFormerModuleType.DATASET,
                             default_args={"dataset_config": dataset_config, "batch_size": batch_size,
                                           "drop_remainder": False, "section": SECTION},
                             where="eval_dataset_task")


def check_rows(dataset, model_config, scoring, generating):
    """Token-scoring metrics read whole rows: seq_length+1 ids (llama_preprocess.py --seq_length S, the training
    rows) or seq_length ids (MindFormers' evaluation rows, --seq_length S-1). Generating metrics need a prompt
    that leaves room to generate and a reference answer in every row."""
    seq_length = model_config.seq_length
    if scoring and dataset.seq_length not in (seq_length, seq_length + 1):
        raise ConfigError(
            f"{DATASET_DIR_KEY}: rows hold {dataset.seq_length} tokens, but model.model_config.seq_length is "
            f"{seq_length} ({next(iter(scoring))} expects rows of {seq_length + 1}: preprocess with "
            f"llama_preprocess.py --seq_length {seq_length})")
    if generating:
        if "labels" not in dataset.columns:
            raise ConfigError(f"{SECTION}.input_columns: {next(iter(generating))} needs the rows' labels (the "
                              "reference answers squad_data_process.py --mode eval writes); reading only "
                              f"{', '.join(dataset.columns)}")
        check_answer_rows(dataset, model_config, DATASET_DIR_KEY)


def fill_batch(batch, batch_size):
    """A short last batch grows to batch_size with copies of its last row, so graph mode reuses the graph compiled
    for full batches; the copies are left out of every metric."""
    missing = batch_size - len(batch["input_ids"])
    if missing <= 0:
        return batch
    return {name: np.concatenate([rows, np.repeat(rows[-1:], missing, axis=0)]) for name, rows in batch.items()}


def score_batch(network, batch, real_rows):
    """(logits, next-token labels, mask) of the rows: the model reads each row but its last token, and a label
    counts where the training loss would count it (the model's own loss_targets), never on filler rows."""
    labels = Tensor(batch["labels"]) if "labels" in batch else None
    tokens, targets, mask = network.loss_targets(Tensor(batch["input_ids"]), labels)
    mask = mask.asnumpy().copy()
    mask[real_rows:] = False
    return network(tokens), targets, mask


def write_results(output_dir, results):
    path = os.path.join(output_dir, RESULTS_NAME)
    with atomic_files(path) as (tmp_path,):
        with open(tmp_path, "w", encoding="utf-8") as stream:
            json.dump(results, stream, indent=2)
            stream.write("\n")
    logger.info("wrote %s", path)
    return path


def evaluate(config):
    """Runs the evaluation and returns {metric type: result}."""
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    metrics = build_metrics(config)
    generating = {name: metric for name, metric in metrics.items() if getattr(metric, "generates", False)}
    scoring = {name: metric for name, metric in metrics.items() if name not in generating}
    batch_size = eval_batch_size(config)
    model_config = build_model_config(config)
    dataset = build_eval_dataset(config, batch_size)
    check_rows(dataset, model_config, scoring, generating)
    model_config, network, tokenizer = build_inference_model(config, "run_mode eval", need_tokenizer=bool(generating),
                                                             need_checkpoint=True)
    generator = AnswerGenerator(network, tokenizer, model_config, config, DATASET_DIR_KEY) if generating else None
    output_dir = os.path.abspath(config.get("output_dir") or "./output")
    callbacks = build_callback_list(config, "eval_callbacks")  # e.g. ObsMonitor: upload the results when done
    state = TrainState(train_cell=network, model_config=model_config, output_dir=output_dir, steps_per_epoch=0,
                       total_steps=0)
    for callback in callbacks:
        callback.on_train_begin(state)
    logger.info("evaluating %s on %d rows of %s in batches of %d", ", ".join(metrics), dataset.num_rows,
                getattr(dataset.loader, "dataset_dir", SECTION), batch_size)
    first_row = 0
    for batch in tqdm(dataset, total=len(dataset), desc="eval", unit="batch", dynamic_ncols=True):
        real_rows = len(batch["input_ids"])
        batch = fill_batch(batch, batch_size)
        if scoring:
            logits, targets, mask = score_batch(network, batch, real_rows)
            for metric in scoring.values():
                metric.update(logits, targets, mask)
        if generating:
            predictions, golds = generator.answer(batch, real_rows, first_row)
            for metric in generating.values():
                metric.update(predictions, golds)
        first_row += real_rows
    results = {name: metric.eval() for name, metric in metrics.items()}
    for name, result in results.items():
        logger.info("%s = %s", name, {name: result})
    if writes_outputs():
        write_results(output_dir, results)
    for callback in callbacks:
        callback.on_train_end(state)
    return results
