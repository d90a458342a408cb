"""Parameter-efficient tuning (PET) of built networks: LoRA and prefix tuning, from model_config.pet_config."""
import logging
import re

from mindformers.pet.lora import apply_lora, is_lora_parameter
from mindformers.pet.pet_config import LoraConfig, PrefixTuningConfig, parse_pet_config
from mindformers.pet.prefix_tuning import apply_prefix_tuning, is_prefix_parameter

logger = logging.getLogger("mindformers")


def is_pet_parameter(name):
    return is_lora_parameter(name) or is_prefix_parameter(name)


def rename_parameters(network):
    """Parameters added to an already-built cell know only their attribute name; give them their full path."""
    for name, param in network.parameters_and_names():
        if param.name != name:
            param.name = name


def freeze_base(network, freeze_exclude=()):
    """Only adapter parameters (and those matching a freeze_exclude regex) keep requires_grad: the rest leave
    network.trainable_params(), hence the optimizer and the gradient computation."""
    keep = [re.compile(pattern) for pattern in freeze_exclude]
    for param in network.get_parameters():
        param.requires_grad = is_pet_parameter(param.name) or any(p.fullmatch(param.name) for p in keep)
    if hasattr(network, "trainable_changed"):  # a network whose graph depends on which weights train
        network.trainable_changed()


def apply_pet(network, pet_config):
    """Apply model_config.pet_config (a mapping or a parsed config) to `network` in place and return it."""
    config = parse_pet_config(pet_config)
    if config is None:
        return network
    groups = getattr(network, "parallel_groups", None)
    if groups is not None and (groups.model_sharded or groups.experts_sharded):
        # adapters are drawn whole and split with their layer (a single rank's parallelize splits nothing)
        raise RuntimeError("apply_pet: add adapters to the plain model, before parallelize splits it")
    if isinstance(config, LoraConfig):
        targets = apply_lora(network, config)
    else:
        targets = apply_prefix_tuning(network, config)
    rename_parameters(network)
    freeze_base(network, config.freeze_exclude)
    network.pet_config = config
    trainable = sum(p.size for p in network.trainable_params())
    total = sum(p.size for p in network.get_parameters())
    logger.info("%s on %d cells: %d trainable parameters of %d (%.3f%%)", config.pet_type, len(targets), trainable,
                total, 100.0 * trainable / max(total, 1))
    return network


__all__ = ["LoraConfig", "PrefixTuningConfig", "apply_pet", "freeze_base", "is_pet_parameter", "parse_pet_config"]
