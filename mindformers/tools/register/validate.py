"""Check the registry-typed sections of a merged config before anything is built or written."""
from mindformers.tools.errors import ConfigError
from mindformers.tools.register.registry import (MindFormerModuleType, MindFormerRegister, check_argument_values,
                                                 check_arguments)


def check_typed_section(section, module_type, where, provided=()):
    """`section` must be a mapping whose `type` is registered under module_type and whose other keys are
    arguments of that class, each of its kind and in its range; `provided` names arguments the trainer passes
    itself."""
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: expected a mapping with 'type', got {section!r}")
    if "type" not in section:
        raise ConfigError(f"{where}.type: missing (one of: {', '.join(MindFormerRegister.names(module_type))})")
    obj_cls = MindFormerRegister.get_cls(module_type, section["type"], where=f"{where}.type")
    args = {key: value for key, value in section.items() if key != "type" and key not in provided}
    check_arguments(obj_cls, args, where)
    check_argument_values(obj_cls, args, where, module_type)
    return obj_cls


def check_train_sections(config):
    """The sections a training run builds, checked in the order the trainer builds them."""
    prefix = f"{config.where()}: " if config.config_path else ""
    checks = [
        (config.get("trainer"), MindFormerModuleType.TRAINER, "trainer", ("config",)),
        ((config.get("model") or {}).get("model_config"), MindFormerModuleType.CONFIG, "model.model_config",
         ("parallel_config",)),
        ((config.get("model") or {}).get("arch"), MindFormerModuleType.MODELS, "model.arch",
         ("config", "recompute_config")),
        (config.get("train_dataset_task"), MindFormerModuleType.DATASET, "train_dataset_task",
         ("dataset_config", "batch_size", "seed", "rank_id", "rank_size")),
        ((config.get("train_dataset") or {}).get("data_loader"), MindFormerModuleType.DATASET_LOADER,
         "train_dataset.data_loader", ("columns", "where")),
        (config.get("optimizer"), MindFormerModuleType.OPTIMIZER, "optimizer", ("params",)),
        (config.get("lr_schedule"), MindFormerModuleType.LR, "lr_schedule", ()),
        (config.get("runner_wrapper"), MindFormerModuleType.WRAPPER, "runner_wrapper",
         ("network", "optimizer", "gradient_accumulation_steps")),
    ]
    try:
        for section, module_type, where, provided in checks:
            check_typed_section(section, module_type, where, provided)
        scale_sense = (config.get("runner_wrapper") or {}).get("scale_sense")
        if isinstance(scale_sense, dict):
            check_typed_section(scale_sense, MindFormerModuleType.LOSS_SCALE, "runner_wrapper.scale_sense")
        for index, callback in enumerate(config.get("callbacks") or []):
            check_typed_section(callback, MindFormerModuleType.CALLBACK, f"callbacks[{index}]")
        tokenizer = (config.get("processor") or {}).get("tokenizer")
        if tokenizer and (tokenizer.get("vocab_file") or tokenizer.get("tokenizer_file")):
            check_typed_section(tokenizer, MindFormerModuleType.TOKENIZER, "processor.tokenizer")
    except ConfigError as error:
        raise ConfigError(f"{prefix}{error}") from None
