"""Checkpoints of PET networks: base weights from one file, adapters from the same or another file."""
import logging

from mindformers.checkpoint.checkpoint_io import load_weights, read_checkpoint
from mindformers.tools.errors import ConfigError

logger = logging.getLogger("mindformers")


def is_pet_network(network):
    return getattr(network, "pet_config", None) is not None


def load_finetune_weights(network, path, params=None, key="load_checkpoint"):
    """Load `path` into `network`. Without PET every parameter must be in the file. With PET the base weights
    must be (a pretrained checkpoint has no adapters; a checkpoint saved after PET training has both), and
    pet_config.adapter_checkpoint, when set, is loaded over them. Returns the names left at their init."""
    from mindformers.pet import is_pet_parameter  # pylint: disable=import-outside-toplevel
    params = read_checkpoint(path, key=key) if params is None else params
    if not is_pet_network(network):
        return load_weights(network, params, path, require_all=True, key=key)
    for param in network.get_parameters():
        if not is_pet_parameter(param.name) and param.name not in params:
            raise ConfigError(f"{key}: {path} has no tensor '{param.name}' (expected shape {tuple(param.shape)})")
    missing = load_weights(network, params, path, require_all=False, key=key)
    return load_adapters(network, missing)


def load_adapters(network, missing=()):
    """pet_config.adapter_checkpoint, when set, over the base weights; returns the names still at their init."""
    from mindformers.pet import is_pet_parameter  # pylint: disable=import-outside-toplevel
    missing = list(missing)
    adapter = network.pet_config.adapter_checkpoint
    if adapter:
        where = "model.model_config.pet_config.adapter_checkpoint"
        adapter_params = read_checkpoint(adapter, key=where)
        unknown = sorted(name for name in adapter_params if is_pet_parameter(name)
                         and name not in {p.name for p in network.get_parameters()})
        if unknown:
            raise ConfigError(f"{where}: {adapter} holds adapters the model does not have (e.g. '{unknown[0]}'): "
                              "is pet_config the one it was trained with?")
        adapters = {name: value for name, value in adapter_params.items() if is_pet_parameter(name)}
        if not adapters:
            raise ConfigError(f"{where}: {adapter} holds no adapter tensors (lora_a/lora_b or prefix_*)")
        load_weights(network, adapters, adapter, require_all=False, key=where)
        missing = sorted(set(missing) - set(adapters))
        logger.info("loaded %d adapter tensors from %s", len(adapters), adapter)
    return missing


def trainable_checkpoint_items(network):
    """What an adapters-only checkpoint holds: the trainable parameters, in ms.save_checkpoint's list form."""
    return [{"name": param.name, "data": param} for param in network.trainable_params()]
