"""Turn the YAML `context` section (and seed) into MindSpore's global state."""
import logging
import os
import random

import numpy as np
import mindspore as ms

from mindformers.core.context.compile_cache import compile_cache_settings
from mindformers.models.decoder.layerwise import layerwise_enabled
from mindformers.tools.errors import ConfigError

logger = logging.getLogger("mindformers")

_MODES = {0: ms.GRAPH_MODE, 1: ms.PYNATIVE_MODE, "GRAPH_MODE": ms.GRAPH_MODE, "PYNATIVE_MODE": ms.PYNATIVE_MODE,
          "graph": ms.GRAPH_MODE, "pynative": ms.PYNATIVE_MODE}
_DEVICES = ("Ascend", "CPU", "GPU")
# Context keys that only mean something on an accelerator; on CPU MindSpore rejects or ignores them.
_DEVICE_ONLY_KEYS = ("max_device_memory", "mempool_block_size", "variable_memory_max_size", "ascend_config",
                     "enable_graph_kernel", "graph_kernel_flags", "memory_optimize_level", "affinity_cpu_list")

_ANY_DEVICE_KEYS = ("runtime_num_threads", "inter_op_parallel_num", "pynative_synchronize")


def device_available(target):
    from mindspore._c_expression import MSContext  # pylint: disable=import-outside-toplevel
    return MSContext.get_instance().is_pkg_support_device(target)


def resolve_device_target(requested):
    """The YAML names Ascend in published configs; on a machine without it the same command runs on CPU."""
    requested = requested or "Ascend"
    if requested not in _DEVICES:
        raise ConfigError(f"context.device_target: expected one of {', '.join(_DEVICES)}, got {requested!r}")
    if requested != "CPU" and not device_available(requested):
        logger.info("device_target %s is not available here; running on CPU", requested)
        return "CPU"
    return requested


def use_device(device_target, device_id):
    """MindSpore fixes the device once its runtime has started; a second run in the same process (tests,
    notebooks) asking for the same device is fine, asking for another is an error."""
    current = ms.get_context("device_target")
    try:
        ms.set_device(device_target, device_id if device_target != "CPU" else None)
    except RuntimeError:
        if current != device_target:
            raise ConfigError(f"context.device_target: this process already runs on {current}, "
                              f"cannot switch to {device_target}") from None


def set_seed(seed):
    """Seed every RNG a run touches: Python, numpy (weight init), MindSpore ops and the dataset engine."""
    random.seed(seed)
    np.random.seed(seed)
    ms.set_seed(seed)
    ms.dataset.config.set_seed(seed)


def cpu_run_settings(mode):
    """MindSpore context settings of a run on CPU in `mode` (the trainer's defaults, which benchmarks share).
    PyNative runs its ops one after the other: MindSpore's asynchronous pipeline hands each op to runtime threads,
    which on a CPU fight the kernels' own for the cores (their queues spin waiting for each other), and a decode
    step of SmolLM2-135M (hundreds of small ops) ran ~10x slower with it. MindSpore reads this once, before the
    first op."""
    return {"mode": mode, "pynative_synchronize": True} if mode == ms.PYNATIVE_MODE else {"mode": mode}


def build_context(config):
    """Apply config.context and config.seed; returns the device target in use."""
    context = dict(config.get("context") or {})
    mode = context.pop("mode", 0)
    if mode not in _MODES:
        raise ConfigError(f"context.mode: expected 0 (GRAPH_MODE) or 1 (PYNATIVE_MODE), got {mode!r}")
    layerwise_enabled(config)  # a layerwise_compile the run cannot have fails before anything starts
    device_target = resolve_device_target(context.pop("device_target", None))
    device_id = int(context.pop("device_id", 0) or 0)
    if device_target != "CPU" and os.environ.get("DEVICE_ID") is not None and config.get("use_parallel"):
        device_id = int(os.environ["DEVICE_ID"])
    use_device(device_target, device_id)
    settings = {"mode": _MODES[mode]}
    jit_config = dict(context.pop("jit_config", None) or {})
    if context.get("jit_level"):
        jit_config["jit_level"] = context.pop("jit_level")
    if jit_config:
        settings["jit_config"] = jit_config
    if context.get("max_call_depth"):
        settings["max_call_depth"] = int(context["max_call_depth"])
    if context.get("save_graphs"):
        settings["save_graphs"] = context["save_graphs"]
        settings["save_graphs_path"] = context.get("save_graphs_path", "./graph")
    for key in _ANY_DEVICE_KEYS:  # thread counts mean the same on every device
        if context.get(key) is not None:
            settings[key] = context[key]
    if device_target == "CPU" and context.get("pynative_synchronize") is None:
        settings.update(cpu_run_settings(settings["mode"]))
    settings.update(compile_cache_settings(config))  # so does the compile cache, in a folder per config
    if context.get("deterministic") or config.get("deterministic"):
        settings["deterministic"] = "ON"
    if device_target != "CPU":
        settings.update({key: context[key] for key in _DEVICE_ONLY_KEYS if context.get(key) is not None})
    else:
        unused = [key for key in _DEVICE_ONLY_KEYS if context.get(key) not in (None, False)]
        if unused:
            logger.info("context: %s apply to Ascend devices only; not used on CPU", ", ".join(unused))
    ms.set_context(**settings)
    set_seed(int(config.get("seed") or 0))  # the same seed on every rank: data-parallel replicas start identical
    if config.get("use_parallel"):
        from mindformers.parallel.parallel_context import init_parallel  # pylint: disable=import-outside-toplevel
        init_parallel(config, device_target)
    logger.info("context: mode=%s device=%s:%s", "GRAPH" if settings["mode"] == ms.GRAPH_MODE else "PYNATIVE",
                device_target, device_id)
    return device_target
