"""What each fixed section of a run config may hold, following the published MindFormers llama2 YAMLs.

Sections whose content depends on a registered class (`optimizer`, `lr_schedule`, `callbacks`,
`model.model_config`, ...) are checked against that class's constructor when the config is validated
against the registry (see `check_typed_sections`); the fixed sections are checked here, per file, so a
mistake names the file that made it.
"""
import difflib
import logging

from mindformers.tools.errors import ConfigError
from mindformers.tools.register.value_spec import ANY, BOOL, DICT, FLOAT, INT, LIST, SEED, STR, Value, as_value

logger = logging.getLogger("mindformers")
# A count that may be left empty (null: the default) but is never zero or negative.
COUNT = Value(INT, min=1)
# MindFormers' -1: "every step / the whole dataset / never", depending on the key.
COUNT_OR_ALL = Value(INT, min=1, also={-1: "disabled / the whole run"})

CONTEXT = {
    "mode": Value(INT, STR, choices=(0, 1, "GRAPH_MODE", "PYNATIVE_MODE", "graph", "pynative")),
    "device_target": Value(STR, choices=("Ascend", "CPU", "GPU")), "device_id": Value(INT, min=0), "enable_graph_kernel": BOOL,
    "graph_kernel_flags": STR, "max_call_depth": COUNT, "max_device_memory": STR, "mempool_block_size": STR,
    "save_graphs": (BOOL, INT), "save_graphs_path": STR, "jit_config": {"jit_level": STR, "infer_boost": STR},
    "jit_level": STR, "memory_optimize_level": STR, "runtime_num_threads": COUNT, "ascend_config": DICT,
    "deterministic": STR, "pynative_synchronize": BOOL, "variable_memory_max_size": STR,
    "enable_compile_cache": BOOL, "compile_cache_path": STR, "affinity_cpu_list": ANY, "inter_op_parallel_num": COUNT,
    # ours: PyNative training with one compiled graph per decoder-layer structure (models/decoder/layerwise.py)
    "layerwise_compile": BOOL,
}

PARALLEL = {
    "parallel_mode": (INT, STR), "gradients_mean": BOOL, "enable_alltoall": BOOL, "full_batch": BOOL,
    "search_mode": STR, "enable_parallel_optimizer": BOOL, "strategy_ckpt_save_file": STR,
    "strategy_ckpt_config": {"save_file": STR, "only_trainable_params": BOOL, "load_file": STR},
    "parallel_optimizer_config": {"gradient_accumulation_shard": BOOL, "parallel_optimizer_threshold": INT,
                                  "optimizer_weight_shard_size": INT},
    "dataset_strategy": ANY, "pipeline_config": DICT, "device_num": COUNT, "loss_repeated_mean": BOOL,
    "enable_reduce_precision": BOOL,
}

PARALLEL_CONFIG = {
    "data_parallel": COUNT, "model_parallel": COUNT, "context_parallel": COUNT, "pipeline_stage": COUNT,
    "use_seq_parallel": BOOL, "micro_batch_num": COUNT, "vocab_emb_dp": BOOL, "gradient_aggregation_group": COUNT,
    "expert_parallel": COUNT, "optimizer_shard": BOOL, "seq_split_num": COUNT, "context_parallel_algo": STR,
}

RECOMPUTE_CONFIG = {
    "recompute": (BOOL, LIST), "select_recompute": (BOOL, LIST, DICT), "parallel_optimizer_comm_recompute": BOOL,
    "mp_comm_recompute": BOOL, "recompute_slice_activation": BOOL, "select_comm_recompute": (BOOL, LIST, DICT),
    "select_recompute_exclude": (BOOL, LIST, DICT), "select_comm_recompute_exclude": (BOOL, LIST, DICT),
}

RUNNER_CONFIG = {
    "epochs": COUNT, "batch_size": COUNT, "sink_mode": BOOL, "sink_size": COUNT_OR_ALL,
    "gradient_accumulation_steps": COUNT, "initial_epoch": Value(INT, min=0), "initial_step": Value(INT, min=0),
    "stop_step": Value(INT, min=0), "global_batch_size": COUNT,
    # consecutive steps with a non-finite loss or gradient norm after which training stops (see README)
    "max_nonfinite_steps": COUNT,
}

DATASET = {
    "data_loader": DICT, "input_columns": LIST, "output_columns": LIST, "column_order": LIST,
    "num_parallel_workers": COUNT, "python_multiprocessing": BOOL, "drop_remainder": BOOL, "batch_size": COUNT,
    "repeat": COUNT, "numa_enable": BOOL, "prefetch_size": COUNT, "seed": SEED, "do_eval": BOOL, "tokenizer": DICT,
    "pad_token_id": INT, "eod_reset": BOOL, "eod_token_id": INT, "construct_args_key": LIST, "shuffle": BOOL,
}

MODEL = {"model_config": DICT, "arch": DICT}

TENSORBOARD = {
    "tensorboard_dir": STR, "tensorboard_queue_size": INT, "log_loss_scale_to_tensorboard": BOOL,
    "log_timers_to_tensorboard": BOOL, "all_ranks": BOOL,
}

TOP_LEVEL = {
    "seed": SEED, "output_dir": STR, "run_mode": STR, "load_checkpoint": STR, "load_ckpt_format": STR,
    "src_strategy_path_or_dir": STR, "auto_trans_ckpt": BOOL, "only_save_strategy": BOOL,
    "resume_training": (BOOL, STR), "use_parallel": BOOL, "context": CONTEXT, "parallel": PARALLEL,
    "parallel_config": PARALLEL_CONFIG, "recompute_config": RECOMPUTE_CONFIG, "runner_config": RUNNER_CONFIG,
    "runner_wrapper": DICT, "optimizer": DICT, "lr_schedule": DICT, "train_dataset": DATASET,
    "train_dataset_task": DICT, "eval_dataset": DATASET, "eval_dataset_task": DICT, "model": MODEL,
    "processor": DICT, "callbacks": LIST, "eval_callbacks": LIST, "metric": (DICT, LIST), "trainer": DICT,
    "moe_config": DICT, "micro_batch_interleave_num": COUNT, "profile": BOOL, "profile_start_step": COUNT,
    "profile_stop_step": COUNT, "init_start_profile": BOOL, "profile_communication": BOOL, "profile_memory": BOOL,
    "profile_output": STR, "layer_scale": BOOL, "layer_decay": FLOAT, "lr_scale": BOOL, "lr_scale_factor": INT,
    "auto_tune": BOOL,
    "filepath_prefix": STR, "autotune_per_step": INT, "remote_save_url": STR, "do_eval": BOOL,
    "eval_step_interval": COUNT_OR_ALL, "eval_epoch_interval": COUNT_OR_ALL, "device_num": COUNT,
    "local_rank": Value(INT, min=0),
    "register_path": STR, "predict_data": ANY, "predict_batch_size": COUNT, "eval_task": STR,
    "eval_data_path": STR, "evaluation_batch_size": COUNT, "max_new_tokens": COUNT,
    "dry_run": BOOL, "deterministic": BOOL, "tensorboard": TENSORBOARD,
}

def describe(expected):
    return "a mapping" if isinstance(expected, dict) else as_value(expected).describe()


def check_value(value, expected, key_path, where):
    """Check one value against its schema entry (recursing into nested mappings)."""
    if isinstance(expected, dict):
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{where}: {key_path}: expected {describe(expected)}, got {value!r}")
        if isinstance(value, dict):
            check_mapping(value, expected, key_path, where)
        return
    as_value(expected).check(value, key_path, where)


def check_mapping(tree, schema, prefix, where, unknown_is_error=True):
    for key, value in tree.items():
        key_path = f"{prefix}.{key}" if prefix else str(key)
        if key not in schema:
            close = difflib.get_close_matches(str(key), schema.keys(), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            message = f"{where}: {key_path}: unknown key{hint}"
            if unknown_is_error:
                raise ConfigError(f"{message} (expected one of: {', '.join(sorted(schema))})")
            logger.warning("%s (ignored)", message)
            continue
        check_value(value, schema[key], key_path, where)


def schema_entry(dotted):
    """The schema entry of a dotted key of the fixed sections (e.g. runner_config.epochs), or None."""
    entry = TOP_LEVEL
    for key in dotted.split("."):
        if not isinstance(entry, dict) or key not in entry:
            return None
        entry = entry[key]
    return entry


def validate_section_tree(tree, where):
    """Check one file's own keys: unknown top-level keys warn, unknown keys inside known sections fail."""
    check_mapping(tree, TOP_LEVEL, "", where, unknown_is_error=False)
    for list_key in ("callbacks", "eval_callbacks"):
        for index, item in enumerate(tree.get(list_key) or []):
            if not isinstance(item, dict):
                raise ConfigError(f"{where}: {list_key}[{index}]: expected a mapping with 'type', got {item!r}")
