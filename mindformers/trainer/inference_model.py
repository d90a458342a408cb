"""The model that predict, chat and evaluation run: network, tokenizer and --load_checkpoint weights, built as the
YAML says and switched to inference."""
import contextlib
import logging

import mindspore as ms

from mindformers.checkpoint import resolve_checkpoint
from mindformers.checkpoint.hf_weights import is_hf_source
from mindformers.models.decoder.layerwise import compile_layerwise, layerwise_enabled
from mindformers.models.modules.shape_only import weights_loaded_after_build
from mindformers.models.tokenization_utils import check_tokenizer_fits_model
from mindformers.parallel import ParallelSettings, check_parallel_config
from mindformers.parallel.groups import init_parallel_groups
from mindformers.parallel.world import rank_and_size
from mindformers.tools.errors import ConfigError
from mindformers.trainer.causal_language_modeling import (build_model_config, build_network, build_tokenizer,
                                                          tokenizer_file_key)
from mindformers.trainer.checkpoint_loading import load_checkpoint_for, named_checkpoint

logger = logging.getLogger("mindformers")


def checkpoint_to_load(config, purpose, required, rank_id=0):
    """The checkpoint file --load_checkpoint names (a file, a folder, or an output folder with rank_<r>/), found
    before anything is built; None when none is given and `purpose` can run without one."""
    source = config.get("load_checkpoint") or named_checkpoint(config)
    if not source:
        if required:
            raise ConfigError(f"load_checkpoint: {purpose} scores trained weights; pass --load_checkpoint (a "
                              "checkpoint file or folder)")
        logger.warning("no load_checkpoint given: running %s with randomly initialised weights", purpose)
        return None
    if is_hf_source(source):  # a HF folder or .gguf, converted while loading
        return source
    return resolve_checkpoint(source, rank_id)


def inference_parallel(config):
    """(settings, rank_id, groups): with use_parallel the mesh of parallel_config, checked, and on CPU this rank's
    model-parallel groups (the network is split for them); sequence parallelism is a training layout and stays off
    (generation's steps are one token long). Data-parallel replicas compute the same results."""
    if not config.get("use_parallel"):
        return ParallelSettings(), 0, None
    rank_id, world_size = rank_and_size()
    settings = check_parallel_config(config, build_model_config(config), world_size, ms.get_context("device_target"))
    groups = None
    if ms.get_auto_parallel_context("parallel_mode") == ms.ParallelMode.STAND_ALONE:
        groups = init_parallel_groups(settings, rank_id, sequence_parallel=False)
    return settings, rank_id, groups


def writes_outputs():
    """Whether this process writes the run's results (rank 0 of a parallel run; every rank computed them)."""
    return rank_and_size()[0] == 0


def build_inference_model(config, purpose, need_tokenizer=True, need_checkpoint=False):
    """(model_config, network, tokenizer) in inference mode; `purpose` ('predict', 'run_mode eval', ...) is named
    in the one-line errors. The tokenizer is None when the config names no file and `need_tokenizer` is False."""
    settings, rank_id, groups = inference_parallel(config)
    path = checkpoint_to_load(config, purpose, need_checkpoint, rank_id)
    tokenizer = build_tokenizer(config)
    key = tokenizer_file_key((config.get("processor") or {}).get("tokenizer") or {}) or "vocab_file"
    if tokenizer is None and need_tokenizer:
        raise ConfigError(f"processor.tokenizer.{key}: {purpose} needs a tokenizer file (set it in the YAML or pass "
                          "--vocab_file)")
    model_config = (config.get("model") or {}).get("model_config") or {}
    # Every weight of a plain model is in the checkpoint (loading requires it), so none is drawn at random first.
    # With pet_config the adapters may stay at their initial values, so those are drawn as usual.
    skip_init = bool(path) and not model_config.get("pet_config")
    with weights_loaded_after_build() if skip_init else contextlib.nullcontext():
        model_config, network = build_network(config, groups)
    if tokenizer is not None:
        check_tokenizer_fits_model(tokenizer, model_config.vocab_size, f"processor.tokenizer.{key}")
    if path:  # with pet_config: base weights + adapters; with auto_trans_ckpt: from any strategy
        loaded = load_checkpoint_for(network, config, settings, rank_id=rank_id)
        unset = [param.name for param in network.get_parameters() if param.name not in loaded]
        if skip_init and unset:  # a family mapping that leaves a weight out would leave it at zeros: say so
            raise RuntimeError(f"{path}: no tensor loaded for {unset[:5]} (built without initial values)")
    network.set_train(False)
    if layerwise_enabled(config):  # after loading (and PET): the layers' structure is final
        compile_layerwise(network)
    return model_config, network, tokenizer
