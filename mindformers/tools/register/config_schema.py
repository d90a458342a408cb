"""What each fixed section of a run config may hold, following the published MindFormers llama2 YAMLs.

Sections whose content depends on a registered class (`optimizer`, `lr_schedule`, `callbacks`,
`model.model_config`, ...) are checked against that class's constructor when the config is validated
against the registry (see `check_typed_sections`); the fixed sections are checked here, per file, so a
mistake names the file that made it.
"""
import difflib
import logging

from mindformers.tools.errors import ConfigError

logger = logging.getLogger("mindformers")

INT, FLOAT, BOOL, STR, LIST, DICT, ANY = "int", "float", "bool", "str", "list", "dict", "any"

CONTEXT = {
    "mode": (INT, STR), "device_target": STR, "device_id": INT, "enable_graph_kernel": BOOL,
    "graph_kernel_flags": STR, "max_call_depth": INT, "max_device_memory": STR, "mempool_block_size": STR,
    "save_graphs": (BOOL, INT), "save_graphs_path": STR, "jit_config": {"jit_level": STR, "infer_boost": STR},
    "jit_level": STR, "memory_optimize_level": STR, "runtime_num_threads": INT, "ascend_config": DICT,
    "deterministic": STR, "pynative_synchronize": BOOL, "variable_memory_max_size": STR,
    "enable_compile_cache": BOOL, "compile_cache_path": STR, "affinity_cpu_list": ANY, "inter_op_parallel_num": INT,
}

PARALLEL = {
    "parallel_mode": (INT, STR), "gradients_mean": BOOL, "enable_alltoall": BOOL, "full_batch": BOOL,
    "search_mode": STR, "enable_parallel_optimizer": BOOL, "strategy_ckpt_save_file": STR,
    "strategy_ckpt_config": {"save_file": STR, "only_trainable_params": BOOL, "load_file": STR},
    "parallel_optimizer_config": {"gradient_accumulation_shard": BOOL, "parallel_optimizer_threshold": INT,
                                  "optimizer_weight_shard_size": INT},
    "dataset_strategy": ANY, "pipeline_config": DICT, "device_num": INT, "loss_repeated_mean": BOOL,
    "enable_reduce_precision": BOOL,
}

PARALLEL_CONFIG = {
    "data_parallel": INT, "model_parallel": INT, "context_parallel": INT, "pipeline_stage": INT,
    "use_seq_parallel": BOOL, "micro_batch_num": INT, "vocab_emb_dp": BOOL, "gradient_aggregation_group": INT,
    "expert_parallel": INT, "optimizer_shard": BOOL, "seq_split_num": INT, "context_parallel_algo": STR,
}

RECOMPUTE_CONFIG = {
    "recompute": (BOOL, LIST), "select_recompute": (BOOL, LIST, DICT), "parallel_optimizer_comm_recompute": BOOL,
    "mp_comm_recompute": BOOL, "recompute_slice_activation": BOOL, "select_comm_recompute": (BOOL, LIST, DICT),
    "select_recompute_exclude": (BOOL, LIST, DICT), "select_comm_recompute_exclude": (BOOL, LIST, DICT),
}

RUNNER_CONFIG = {
    "epochs": INT, "batch_size": INT, "sink_mode": BOOL, "sink_size": INT, "gradient_accumulation_steps": INT,
    "initial_epoch": INT, "initial_step": INT, "stop_step": INT, "global_batch_size": INT,
}

DATASET = {
    "data_loader": DICT, "input_columns": LIST, "output_columns": LIST, "column_order": LIST,
    "num_parallel_workers": INT, "python_multiprocessing": BOOL, "drop_remainder": BOOL, "batch_size": INT,
    "repeat": INT, "numa_enable": BOOL, "prefetch_size": INT, "seed": INT, "do_eval": BOOL, "tokenizer": DICT,
    "pad_token_id": INT, "eod_reset": BOOL, "eod_token_id": INT, "construct_args_key": LIST, "shuffle": BOOL,
}

MODEL = {"model_config": DICT, "arch": DICT}

TENSORBOARD = {
    "tensorboard_dir": STR, "tensorboard_queue_size": INT, "log_loss_scale_to_tensorboard": BOOL,
    "log_timers_to_tensorboard": BOOL, "all_ranks": BOOL,
}

TOP_LEVEL = {
    "seed": INT, "output_dir": STR, "run_mode": STR, "load_checkpoint": STR, "load_ckpt_format": STR,
    "src_strategy_path_or_dir": STR, "auto_trans_ckpt": BOOL, "only_save_strategy": BOOL,
    "resume_training": (BOOL, STR), "use_parallel": BOOL, "context": CONTEXT, "parallel": PARALLEL,
    "parallel_config": PARALLEL_CONFIG, "recompute_config": RECOMPUTE_CONFIG, "runner_config": RUNNER_CONFIG,
    "runner_wrapper": DICT, "optimizer": DICT, "lr_schedule": DICT, "train_dataset": DATASET,
    "train_dataset_task": DICT, "eval_dataset": DATASET, "eval_dataset_task": DICT, "model": MODEL,
    "processor": DICT, "callbacks": LIST, "eval_callbacks": LIST, "metric": (DICT, LIST), "trainer": DICT,
    "moe_config": DICT, "micro_batch_interleave_num": INT, "profile": BOOL, "profile_start_step": INT,
    "profile_stop_step": INT, "init_start_profile": BOOL, "profile_communication": BOOL, "profile_memory": BOOL,
    "profile_output": STR, "layer_scale": BOOL, "layer_decay": FLOAT, "lr_scale": BOOL, "lr_scale_factor": INT,
    "auto_tune": BOOL,
    "filepath_prefix": STR, "autotune_per_step": INT, "remote_save_url": STR, "do_eval": BOOL,
    "eval_step_interval": INT, "eval_epoch_interval": INT, "device_num": INT, "local_rank": INT,
    "register_path": STR, "predict_data": ANY, "predict_batch_size": INT, "eval_task": STR,
    "eval_data_path": STR, "evaluation_batch_size": INT, "max_new_tokens": INT,
    "dry_run": BOOL, "deterministic": BOOL, "tensorboard": TENSORBOARD,
}

# Keys of these types may be left empty (null) in a YAML file.
_PYTHON_TYPES = {INT: int, FLOAT: (int, float), BOOL: bool, STR: str, LIST: (list, tuple), DICT: dict}


def _matches(value, expected):
    if value is None or expected == ANY or isinstance(expected, dict):
        return value is None or not isinstance(expected, dict) or isinstance(value, dict)
    kinds = expected if isinstance(expected, tuple) else (expected,)
    for kind in kinds:
        python_type = _PYTHON_TYPES[kind]
        if kind in (INT, FLOAT) and isinstance(value, bool):
            continue
        if isinstance(value, python_type):
            return True
    return False


def describe(expected):
    if isinstance(expected, dict):
        return "a mapping"
    kinds = expected if isinstance(expected, tuple) else (expected,)
    words = {INT: "an integer", FLOAT: "a number", BOOL: "true/false", STR: "a string", LIST: "a list",
             DICT: "a mapping"}
    return " or ".join(words[kind] for kind in kinds)


def check_value(value, expected, key_path, where):
    """Check one value against its schema entry (recursing into nested mappings)."""
    if not _matches(value, expected):
        raise ConfigError(f"{where}: {key_path}: expected {describe(expected)}, got {value!r}")
    if isinstance(expected, dict) and isinstance(value, dict):
        check_mapping(value, expected, key_path, where)


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


def validate_section_tree(tree, where):
    """Check one file's own keys: unknown top-level keys warn, unknown keys inside known sections fail."""
    check_mapping(tree, TOP_LEVEL, "", where, unknown_is_error=False)
    for list_key in ("callbacks", "eval_callbacks"):
        for index, item in enumerate(tree.get(list_key) or []):
            if not isinstance(item, dict):
                raise ConfigError(f"{where}: {list_key}[{index}]: expected a mapping with 'type', got {item!r}")
