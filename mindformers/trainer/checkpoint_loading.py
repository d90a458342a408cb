"""The one way a run loads --load_checkpoint: weights for train, finetune, predict and eval, and for a resume the
optimizer state, loss scale and counters too.

Without auto_trans_ckpt a rank loads its own file (rank_<r>/ of a folder) as it is, after checking that it was
saved under the same mesh at the same place. With auto_trans_ckpt the checkpoint may come from any strategy (a
folder of rank_*/ files with their strategy.json, MindSpore strategy files through src_strategy_path_or_dir, or
one whole file): each rank assembles the pieces it needs, one tensor at a time.
"""
import logging
import os

from mindformers.checkpoint.checkpoint_io import load_weights, read_checkpoint, resolve_checkpoint
from mindformers.checkpoint.checkpoint_source import CheckpointSource
from mindformers.checkpoint.rank_layout import whole_layout
from mindformers.checkpoint.reshard import reshard_for
from mindformers.parallel.layout_file import (check_checkpoint_strategy, layout_record, network_holds_shards,
                                              rank_layout)
from mindformers.checkpoint.hf_weights import is_hf_source, load_hf_weights
from mindformers.pet.checkpoint import is_pet_network, load_adapters, load_finetune_weights

logger = logging.getLogger("mindformers")


def resharded_checkpoint(network, cell, config, settings, rank_id, source, resume_name):
    """(where, tensors) for this rank out of a checkpoint of any strategy: `cell`'s parameters as this rank's
    layout wants them (network weights and, when `cell` is the train cell, optimizer state), plus counters."""
    checkpoint = CheckpointSource(source, config.get("src_strategy_path_or_dir") or None, resume_name)
    if network_holds_shards():
        target = rank_layout(layout_record(network, settings, rank_id), "this run's layout", rank_id)
    else:  # semi-auto parallel (Ascend): the network takes whole tensors and MindSpore slices them when compiling
        target = whole_layout("this run")
    tensors = reshard_for(checkpoint, target, {param.name: param for param in cell.get_parameters()})
    logger.info("auto_trans_ckpt: resharded %s (%s, %d file(s)) to this run's %s, rank %d", checkpoint.location,
                checkpoint.layouts.description, len(checkpoint.ranks), settings.describe(), rank_id)
    return checkpoint.location, tensors


def named_checkpoint(config):
    """model_config.checkpoint_name_or_path when it is a local file or folder (MindFormers loads it when no
    load_checkpoint is given). A model-zoo name such as 'llama2_7b' is what MindFormers downloads; nothing is
    downloaded here, which is said once."""
    name = ((config.get("model") or {}).get("model_config") or {}).get("checkpoint_name_or_path")
    if not name:
        return None
    if os.path.exists(os.path.expanduser(str(name))):
        return os.path.expanduser(str(name))
    logger.warning("model.model_config.checkpoint_name_or_path %r is not a local file or folder: named checkpoints "
                   "are not downloaded here (pass --load_checkpoint); weights start from their initialisation", name)
    return None


def load_checkpoint_for(network, config, settings, rank_id=0, resume_cell=None, source=None):
    """Load config.load_checkpoint (or `source`) into `network`. With `resume_cell` (the train cell) this is a
    resume: its parameters (optimizer moments, step, loss scale) are loaded too and config.resume_training may name
    the file. Returns the loaded tensors by name (step_num, epoch_num, loss_scale among them when saved), or None
    when no checkpoint is given."""
    source = config.get("load_checkpoint") or source or named_checkpoint(config)
    if not source:
        return None
    resume_name = config.get("resume_training") if resume_cell is not None else None
    if resume_cell is None and is_hf_source(source):  # a HF folder or .gguf: converted on the fly, one tensor at a time
        loaded = load_hf_weights(network, network.config, source)
        if is_pet_network(network):
            load_adapters(network)
        logger.info("loaded weights from %s (converted from HuggingFace/GGUF layout)", source)
        return dict.fromkeys(loaded)  # the names only: the tensors went straight into the network
    if config.get("auto_trans_ckpt"):
        where, tensors = resharded_checkpoint(network, resume_cell or network, config, settings, rank_id, source,
                                              resume_name)
    else:
        where = resolve_checkpoint(source, rank_id, resume_name)
        check_checkpoint_strategy(where, settings, rank_id, config.get("src_strategy_path_or_dir") or None,
                                  with_state=resume_cell is not None)
        tensors = read_checkpoint(where)
    if resume_cell is not None:
        load_weights(resume_cell, tensors, where, require_all=False)
        load_weights(network, tensors, where, require_all=True)
    else:
        load_finetune_weights(network, where, tensors)  # with PET: base weights required, adapters optional
    logger.info("%s from %s", "resumed" if resume_cell is not None else "loaded weights", where)
    return tensors
