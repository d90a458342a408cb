"""MindFormers config keys this trainer does not implement, each with the value that means "feature off".

A config may carry such a key at its neutral value (MindFormers' YAMLs spell most of them out); any other value is
refused with one line naming the key, so a model or run is never silently built as if the feature were off. Keys
that only steer how Ascend executes the same computation (data sinking, dataset prefetch, selective recompute) are
listed apart: they are accepted and named once in the log of a run that sets them.

`section` is the dotted path of a mapping in the merged config ("" for the top level), or `callbacks:<Type>` for
the arguments of that callback type in `callbacks` and `eval_callbacks`. `neutral` is a tuple of accepted values
or a function (value, config) -> bool. When a feature lands, its row goes.
"""
import logging
from collections import namedtuple

from mindformers.tools.errors import ConfigError

logger = logging.getLogger("mindformers")

Key = namedtuple("Key", "section key neutral feature")


def _zero_offset(value, _config):
    return value in (0, None) or (isinstance(value, (list, tuple)) and not any(_flatten(value)))


def _flatten(values):
    for value in values:
        if isinstance(value, (list, tuple)):
            yield from _flatten(value)
        else:
            yield value


def _unless(switch_path):
    """Neutral whatever its value while the switch (a top-level key) is off: the key only tunes that feature."""
    return lambda _value, config: not config.get(switch_path)


def _only_whole_model_parallel(value, config):
    """integrated_save merges model-parallel slices; with one slice per weight there is nothing to merge."""
    mp = (config.get("parallel_config") or {}).get("model_parallel") or 1
    return value in (False, None) or mp == 1 or not config.get("use_parallel")


_BY_TRAINER = "set by the trainer from the run; remove it"
MODEL = "model.model_config"

UNIMPLEMENTED = [
    Key(MODEL, "offset", _zero_offset, "per-stage pipeline layer offsets (expected 0)"),
    Key(MODEL, "fine_grain_interleave", (1, None), "fine-grained interleaving of layer compute and communication "
                                                   "(expected 1)"),
    Key(MODEL, "pp_interleave_num", (1, None), "interleaved pipeline stages (expected 1)"),
    Key(MODEL, "use_rope_slice", (False, None), "sliced rotary embedding (expected False)"),
    Key("parallel_config", "context_parallel", (1, None), "context parallelism (expected 1)"),
    Key("parallel_config", "context_parallel_algo", lambda _v, c: ((c.get("parallel_config") or {})
                                                                   .get("context_parallel") or 1) == 1,
        "context parallelism"),
    Key("parallel_config", "seq_split_num", (1, None), "sequence splitting (expected 1)"),
    Key("", "micro_batch_interleave_num", (1, None), "micro-batch interleaving (expected 1)"),
    Key("", "only_save_strategy", (False, None), "saving only the parallel strategy (expected False)"),
    Key("", "do_eval", (False, None), "evaluation during training (expected False; run --run_mode eval on a "
                                      "saved checkpoint)"),
    Key("", "eval_step_interval", _unless("do_eval"), "evaluation during training"),
    Key("", "eval_epoch_interval", _unless("do_eval"), "evaluation during training"),
    Key("", "auto_tune", (False, None), "auto-tuning of the data pipeline (expected False)"),
    Key("", "filepath_prefix", _unless("auto_tune"), "auto-tuning"),
    Key("", "autotune_per_step", _unless("auto_tune"), "auto-tuning"),
    Key("", "layer_scale", (False, None), "layer-wise learning-rate decay (expected False)"),
    Key("", "layer_decay", _unless("layer_scale"), "layer-wise learning-rate decay"),
    Key("", "lr_scale", (False, None), "learning-rate scaling by batch size (expected False)"),
    Key("", "lr_scale_factor", _unless("lr_scale"), "learning-rate scaling by batch size"),
    Key("runner_config", "initial_epoch", (0, None), "a start position set by hand (expected 0; resume with "
                                                     "--resume_training instead)"),
    Key("runner_config", "initial_step", (0, None), "a start position set by hand (expected 0; resume with "
                                                    "--resume_training instead)"),
    Key("runner_config", "stop_step", (0, None), "stopping at a given step (expected 0)"),
    Key("callbacks:MFLossMonitor", "learning_rate", (None,), _BY_TRAINER),
    Key("callbacks:MFLossMonitor", "micro_batch_num", (1, None), _BY_TRAINER),
    Key("callbacks:MFLossMonitor", "micro_batch_interleave_num", (1, None), _BY_TRAINER),
    Key("callbacks:MFLossMonitor", "origin_epochs", (None,), _BY_TRAINER),
    Key("callbacks:MFLossMonitor", "dataset_size", (None,), _BY_TRAINER),
    Key("callbacks:MFLossMonitor", "initial_epoch", (0, None), _BY_TRAINER),
    Key("callbacks:MFLossMonitor", "initial_step", (0, None), _BY_TRAINER),
    Key("callbacks:MFLossMonitor", "global_batch_size", (0, None), _BY_TRAINER),
    Key("callbacks:MFLossMonitor", "gradient_accumulation_steps", (1, None), _BY_TRAINER),
    Key("callbacks:CheckpointMonitor", "integrated_save", _only_whole_model_parallel,
        "merged saves of model-parallel slices (expected False; merge with mindformers.tools.transform_ckpt)"),
    Key("callbacks:CheckpointMonitor", "keep_checkpoint_per_n_minutes", (0, None),
        "keeping one checkpoint per n minutes (expected 0; keep_checkpoint_max keeps the newest)"),
    Key("callbacks:CheckpointMonitor", "async_save", (False, None), "saving in a background thread (expected "
                                                                     "False; saves are atomic and synchronous)"),
    Key("callbacks:CheckpointMonitor", "remove_redundancy", (False, None), "redundancy-free saves (expected False)"),
    Key("callbacks:SummaryMonitor", "collect_specified_data", (None,), "collecting tensors and graphs (expected none)"),
    Key("callbacks:SummaryMonitor", "keep_default_action", (True, None), "collecting tensors and graphs "
                                                                         "(expected True)"),
    Key("callbacks:SummaryMonitor", "custom_lineage_data", (None,), "lineage records (expected none)"),
    Key("callbacks:SummaryMonitor", "collect_tensor_freq", (None,), "collecting tensors (expected none)"),
    Key("callbacks:SummaryMonitor", "export_options", (None,), "exporting tensors (expected none)"),
]


def _unless_in(section, switch):
    """Neutral whatever its value while `section.switch` is off."""
    return lambda _value, config: not (config.get(section) or {}).get(switch)


for _dataset in ("train_dataset", "eval_dataset"):
    UNIMPLEMENTED += [
        Key(_dataset, "output_columns", (None,), "renamed output columns (expected none)"),
        Key(_dataset, "column_order", (None,), "reordered columns (expected none)"),
        Key(_dataset, "construct_args_key", (None,), "columns mapped to model arguments (expected none)"),
        Key(_dataset, "tokenizer", (None,), "tokenizing raw text in the dataset (expected none; preprocess into "
                                            "MindRecord with llama_preprocess.py)"),
        Key(_dataset, "eod_reset", (False, None), "attention reset at end-of-document tokens (expected False)"),
        Key(_dataset, "eod_token_id", _unless_in(_dataset, "eod_reset"), "attention reset at end-of-document"),
        Key(_dataset, "pad_token_id", (None,), "dataset-level padding (expected none; rows are written padded)"),
    ]

NO_EFFECT = [
    Key("runner_config", "sink_mode", (False, None), "steps run one at a time from Python (no dataset sink)"),
    Key("runner_config", "sink_size", (1, -1, None), "steps run one at a time from Python (no dataset sink)"),
    Key("recompute_config", "select_recompute", (False, None), "operator-level recompute (memory only)"),
    Key("recompute_config", "select_comm_recompute", (False, None), "communication recompute (memory only)"),
    Key("recompute_config", "select_recompute_exclude", (False, None), "operator-level recompute (memory only)"),
    Key("recompute_config", "select_comm_recompute_exclude", (False, None), "communication recompute (memory only)"),
    Key("recompute_config", "parallel_optimizer_comm_recompute", (False, None), "communication recompute "
                                                                                "(memory only)"),
    Key("recompute_config", "mp_comm_recompute", (False, True, None), "communication recompute (memory only)"),
    Key("recompute_config", "recompute_slice_activation", (False, True, None), "activation slicing (memory only)"),
    Key("parallel_config", "gradient_aggregation_group", (4, None), "gradient all-reduce fusion (speed only)"),
    Key("processor", "type", (None, "LlamaProcessor"), "text is tokenized by processor.tokenizer directly"),
    Key("processor", "return_tensors", (None, "ms"), "text is tokenized by processor.tokenizer directly"),
]
for _dataset in ("train_dataset", "eval_dataset"):
    NO_EFFECT += [
        Key(_dataset, "python_multiprocessing", (False, None), "rows are read in order by one pipeline"),
        Key(_dataset, "numa_enable", (False, None), "rows are read in order by one pipeline"),
        Key(_dataset, "prefetch_size", (1, None), "rows are read in order by one pipeline"),
    ]


def _is_neutral(entry, value, config):
    if callable(entry.neutral):
        return entry.neutral(value, config)
    return any(value is neutral or (value == neutral and type(value) is type(neutral))  # noqa: E721
               for neutral in entry.neutral)


def _callback_class_name(item):
    from mindformers.tools.register.registry import MindFormerModuleType, MindFormerRegister  # noqa: E501 pylint: disable=import-outside-toplevel
    name = item.get("type")
    if not MindFormerRegister.is_exist(MindFormerModuleType.CALLBACK, name):
        return name
    return MindFormerRegister.get_cls(MindFormerModuleType.CALLBACK, name).__name__


def present_keys(config, entries):
    """(entry, key path, value) for every entry whose key the config sets."""
    found = []
    for entry in entries:
        if entry.section.startswith("callbacks:"):
            wanted = entry.section.split(":", 1)[1]
            for list_key in ("callbacks", "eval_callbacks"):
                for index, item in enumerate(config.get(list_key) or []):
                    if isinstance(item, dict) and entry.key in item and _callback_class_name(item) == wanted:
                        found.append((entry, f"{list_key}[{index}].{entry.key}", item[entry.key]))
            continue
        node = config
        for part in filter(None, entry.section.split(".")):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and entry.key in node:
            path = f"{entry.section}.{entry.key}" if entry.section else entry.key
            found.append((entry, path, node[entry.key]))
    return found


def check_unimplemented(config, where=None):
    """One line for the first key set to a value that asks for a feature this trainer does not have."""
    for entry, path, value in present_keys(config, UNIMPLEMENTED):
        if not _is_neutral(entry, value, config):
            place = f"{where}: " if where else ""
            raise ConfigError(f"{place}{path}: {entry.feature} is not implemented here; got {value!r}")


def log_no_effect_keys(config):
    """Name, once, the execution-only settings a run carries that do not change anything on this trainer."""
    names = [f"{path}={value!r} ({entry.feature})" for entry, path, value in present_keys(config, NO_EFFECT)
             if not _is_neutral(entry, value, config)]
    if names:
        logger.info("settings with no effect on this trainer (same results): %s", "; ".join(names))
    return names
