"""The command line of run_mindformer.py: MindFormers' flags, applied over the YAML, then one run."""
import argparse
import importlib
import os
import sys
import traceback

from mindformers.tools.errors import ConfigError, OneLineParser, exit_on_user_error

RUN_MODES = ("train", "finetune", "eval", "predict")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "none")


def bool_or_none(text):
    """True/False for the spellings users write, None for anything else."""
    lowered = str(text).lower()
    return True if lowered in _TRUE else False if lowered in _FALSE else None


def str2bool(flag):
    def parse(text):
        value = bool_or_none(text)
        if value is None:
            raise argparse.ArgumentTypeError(f"{flag}: expected True or False, got {text!r}")
        return value
    return parse


def true_false_or_name(text):
    """--resume_training takes True/False or the file name of the checkpoint to resume from."""
    value = bool_or_none(text)
    return text if value is None else value


def build_parser():
    parser = OneLineParser(prog="run_mindformer.py", description="Train, fine-tune, evaluate or run a model "
                                                                  "from a MindFormers-style YAML config.")
    add = parser.add_argument
    add("--config", required=True, help="YAML config (its base_config chain is loaded too)")
    add("--run_mode", choices=RUN_MODES, default=None, help="what to do (default: run_mode in the YAML, else train)")
    add("--load_checkpoint", default=None, help="checkpoint file or folder (rank_*/ subfolders are searched)")
    add("--src_strategy_path_or_dir", default=None, help="strategy of a distributed checkpoint being loaded")
    add("--auto_trans_ckpt", type=str2bool("--auto_trans_ckpt"), default=None,
        help="reshard a distributed checkpoint to the current strategy on load")
    add("--resume_training", type=true_false_or_name, default=None,
        help="True/False, or the name of the checkpoint file to resume from")
    add("--train_dataset_dir", default=None, help="MindRecord file or folder for training")
    add("--eval_dataset_dir", default=None, help="MindRecord file or folder for evaluation")
    add("--eval_task", default=None, help="run_mode eval: run this benchmark task (e.g. mmlu, gsm8k) instead of "
                                          "the YAML metric")
    add("--eval_data_path", default=None, help="with --eval_task: the benchmark's local folder or file")
    add("--evaluation_batch_size", type=int, default=None, help="run_mode eval: rows or questions per batch")
    add("--max_new_tokens", type=int, default=None,
        help="tokens to generate per prompt (predict, generating metrics, benchmark tasks: else their default)")
    add("--predict_data", nargs="+", default=None, help="prompt(s), or a file with one prompt per line")
    add("--predict_batch_size", type=int, default=None)
    add("--use_parallel", type=str2bool("--use_parallel"), default=None)
    add("--device_id", type=int, default=None)
    add("--device_target", choices=("Ascend", "CPU", "GPU"), default=None)
    add("--epochs", type=int, default=None)
    add("--batch_size", type=int, default=None)
    add("--seed", type=int, default=None)
    add("--output_dir", default=None)
    add("--register_path", default=None, help="folder (e.g. research/mistral) whose .py files are imported to register "
                                              "their classes: their code RUNS with your permissions, so give only "
                                              "folders you trust")
    add("--profile", type=str2bool("--profile"), default=None)
    add("--vocab_file", default=None, help="tokenizer file, overriding processor.tokenizer.vocab_file")
    add("--dry_run", type=str2bool("--dry_run"), nargs="?", const=True, default=None,
        help="print per-device memory estimates and weight layouts for the config's mesh, without devices")
    add("--device_num", type=int, default=None, help="with --dry_run: devices to plan for (scales data_parallel)")
    add("--device_memory", default=None, help="with --dry_run: memory of one device, e.g. 64GB (Atlas 800T A2)")
    return parser


# flag -> the dotted config key it overrides
FLAG_KEYS = {
    "run_mode": "run_mode", "load_checkpoint": "load_checkpoint",
    "src_strategy_path_or_dir": "src_strategy_path_or_dir", "auto_trans_ckpt": "auto_trans_ckpt",
    "resume_training": "resume_training", "train_dataset_dir": "train_dataset.data_loader.dataset_dir",
    "eval_dataset_dir": "eval_dataset.data_loader.dataset_dir", "predict_data": "predict_data",
    "predict_batch_size": "predict_batch_size", "use_parallel": "use_parallel",
    "device_id": "context.device_id", "device_target": "context.device_target",
    "epochs": "runner_config.epochs", "batch_size": "runner_config.batch_size", "seed": "seed",
    "output_dir": "output_dir", "profile": "profile", "vocab_file": "processor.tokenizer.vocab_file",
    "dry_run": "dry_run", "eval_task": "eval_task", "eval_data_path": "eval_data_path",
    "evaluation_batch_size": "evaluation_batch_size", "max_new_tokens": "max_new_tokens",
}


def flag_overrides(args):
    """CLI flags as dotted config keys; flags left unset do not touch the YAML."""
    return {key: getattr(args, flag) for flag, key in FLAG_KEYS.items() if getattr(args, flag) is not None}


def register_path(path):
    """Import a research/ model folder so its @MindFormerRegister.register classes exist. Importing runs the
    folder's code in this process: it is the user's own code, trusted like a script they run."""
    folder = os.path.abspath(path)
    if not os.path.isdir(folder):
        raise ConfigError(f"--register_path: not a folder: {path}")
    if os.path.isfile(os.path.join(folder, "__init__.py")):
        sys.path.insert(0, os.path.dirname(folder))
        import_user_module(os.path.basename(folder), path)
        return
    sys.path.insert(0, folder)
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            import_user_module(name[:-3], path)


def import_user_module(name, path):
    """Import one module of a --register_path folder; its failure is one line naming the file and line."""
    try:
        importlib.import_module(name)
    except Exception as error:  # pylint: disable=broad-except  (the user's code: any error is theirs to see)
        if isinstance(error, SyntaxError):
            where = f"{error.filename}:{error.lineno}"
        else:
            frame = traceback.extract_tb(error.__traceback__)[-1]
            where = f"{frame.filename}:{frame.lineno}"
        detail = " ".join(str(error).split())
        raise ConfigError(f"--register_path: importing {path} failed at {where}: {type(error).__name__}: "
                          f"{detail}") from None


def load_config(args):
    from mindformers.tools.register import MindFormerConfig  # pylint: disable=import-outside-toplevel
    from mindformers.tools.register.config_schema import check_value, schema_entry  # noqa: E402
    from mindformers.tools.register.unsupported_keys import check_unimplemented  # noqa: E402
    config = MindFormerConfig(args.config)
    flags = {key: flag for flag, key in FLAG_KEYS.items()}
    for key, value in flag_overrides(args).items():
        entry = schema_entry(key)
        if entry is not None:
            check_value(value, entry, key, f"--{flags[key]}")
        config.merge_from_dict({key: value})
    config.run_mode = config.get("run_mode") or "train"
    check_unimplemented(config, config.where())
    return config


def load_config_with(config_path, **flags):
    """The config run_mindformer.py builds from `--config config_path` and these flags (None: not given), for tools
    that run the same model outside run_mindformer.py (chat, the server)."""
    argv = ["--config", config_path]
    for flag, value in flags.items():
        if value is not None:
            argv += [f"--{flag}", str(value)]
    return load_config(build_parser().parse_args(argv))


def check_before_writing(config):
    """What can be checked without building anything, checked before the output folder is touched."""
    # pylint: disable=import-outside-toplevel
    from mindformers.tools.register.validate import check_train_sections
    from mindformers.tools.run_inputs import check_max_new_tokens, check_output_dir
    config.output_dir = check_output_dir(config.get("output_dir") or "./output")
    if config.run_mode in ("train", "finetune"):
        check_train_sections(config)  # every registered part's keys and values
        from mindformers.models.decoder.layerwise import layerwise_enabled
        layerwise_enabled(config)  # context.layerwise_compile only where the run can have it
    else:
        check_max_new_tokens(config)
    from mindformers.trainer.causal_language_modeling import build_model_config
    try:
        build_model_config(config)  # the model config's own checks (sizes that divide, dtypes); no weights
    except ConfigError as error:
        raise ConfigError(f"{config.where()}: {error}") from None
    if config.run_mode == "predict":
        from mindformers.trainer.predict import read_prompts
        read_prompts(config.get("predict_data"))


@exit_on_user_error
def main(argv=None):
    from mindformers.generation.timing import mark_run_start  # pylint: disable=import-outside-toplevel
    mark_run_start()  # predict's log counts its load time from here
    args = build_parser().parse_args(argv)
    if args.register_path:
        register_path(args.register_path)
    config = load_config(args)
    if config.get("dry_run"):
        from mindformers.parallel.dry_run import run_dry_run  # pylint: disable=import-outside-toplevel
        return run_dry_run(config, device_num=args.device_num, device_memory=args.device_memory)
    import mindformers  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import  (registers classes)
    check_before_writing(config)
    from mindformers.core.context import build_context  # pylint: disable=import-outside-toplevel
    from mindformers.tools.logger import setup_logging  # pylint: disable=import-outside-toplevel
    from mindformers.tools.register import MindFormerModuleType, build_from_config  # noqa: E402
    from mindformers.tools.register.unsupported_keys import log_no_effect_keys  # noqa: E402
    output_dir = config.output_dir
    setup_logging(output_dir)
    log_no_effect_keys(config)
    build_context(config)
    if config.get("use_parallel"):  # per-rank log folder, now that the rank is known
        from mindformers.parallel.world import rank_and_size  # pylint: disable=import-outside-toplevel
        setup_logging(output_dir, rank_and_size()[0])
    trainer = build_from_config(config.get("trainer") or {"type": "CausalLanguageModelingTrainer"},
                                MindFormerModuleType.TRAINER, default_args={"config": config}, where="trainer")
    trainer.run(config.run_mode)
    return 0
