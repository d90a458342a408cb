"""Where MindSpore's compile cache lives for one run: a folder per (config, code, MindSpore version).

MindSpore's cache (context enable_compile_cache / compile_cache_path) stores the compiled graphs of a run by the
order they were compiled in and reuses them when the Python sources it follows are unchanged. It does not notice a
changed model config (a different head count gives the same parameter shapes, and the cached graph is silently
used), nor changes in modules the entry script imports only through the registry. So each distinct config gets its
own folder under compile_cache_path, named by a digest of the config, the mindformers sources (and a
--register_path folder's) and the MindSpore version: a second run of the same config reuses its graphs, any change
compiles afresh.
"""
import functools
import hashlib
import json
import logging
import os

import mindspore as ms

logger = logging.getLogger("mindformers")

# Top-level keys that say where a run reads and writes, not what it compiles.
_NOT_COMPILED_KEYS = ("output_dir", "load_checkpoint", "src_strategy_path_or_dir", "resume_training",
                      "auto_trans_ckpt", "callbacks", "profile", "profile_output", "context")
# Training compiles the same graphs in the same order on every run of a config. Predict, serving and evaluation
# compile a graph per prompt-length bucket in the order the prompts (or the data file's rows) ask for them, which
# MindSpore's cache, keyed by compile order, cannot tell apart. Predict reads all its prompts first, so it keys its
# folder by their token lengths as well (predict_compile_cache) and turns the cache on itself.
_CACHED_RUN_MODES = ("train", "finetune")
_PREDICT = "predict"
# MindSpore reads compile_cache_path once, at the first compilation with the cache on; a later path in the same
# process is not used. The folder in use, so a second run in one process does not believe it caches elsewhere.
_FOLDER_IN_USE = []


def _source_files(folder):
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.join(root, name)


@functools.lru_cache(maxsize=None)
def source_digest(folder):
    """Digest of the Python sources under `folder` (names and contents)."""
    digest = hashlib.sha256()
    for path in _source_files(folder):
        digest.update(os.path.relpath(path, folder).encode())
        with open(path, "rb") as stream:
            digest.update(stream.read())
    return digest.hexdigest()


def config_digest(config):
    """Digest of what decides the compiled graphs: the config (less where it reads and writes), the compile-relevant
    context keys, the code and MindSpore's version."""
    import mindformers  # pylint: disable=import-outside-toplevel
    plain = {key: value for key, value in dict(config).items() if key not in _NOT_COMPILED_KEYS}
    context = {key: value for key, value in dict(config.get("context") or {}).items()
               if key not in ("enable_compile_cache", "compile_cache_path", "save_graphs_path")}
    parts = {"config": plain, "context": context, "mindspore": ms.__version__,
             "mindformers": source_digest(os.path.dirname(os.path.abspath(mindformers.__file__)))}
    if config.get("register_path"):
        parts["register_path"] = source_digest(os.path.abspath(config.register_path))
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def compile_cache_settings(config):
    """The context settings for MindSpore's compile cache: its folder for this config, or off."""
    context = config.get("context") or {}
    # Off is said out loud when an earlier run in this process turned the cache on (tests, notebooks).
    off = {"enable_compile_cache": False} if ms.get_context("enable_compile_cache") else {}
    if not context.get("enable_compile_cache"):
        return off
    if config.get("run_mode") == _PREDICT:
        return off  # predict_compile_cache turns it on once the prompts are known
    if config.get("run_mode") not in _CACHED_RUN_MODES:
        logger.info("compile cache: used for train, finetune and predict only, not for run_mode %s (its graphs "
                    "depend on the data)", config.get("run_mode"))
        return off
    if context.get("layerwise_compile"):
        # Measured (benchmarks/cold_start.py, 8 layers): with the cache on, PyNative's first step took 2-3x longer,
        # on the run that fills it and on the run that reads it alike; and it cannot hold traced graphs.
        logger.info("compile cache: not used with context.layerwise_compile (it slows PyNative's first step)")
        return off
    return _use_folder(os.path.join(_cache_root(context), config_digest(config)))


def _cache_root(context):
    return os.path.abspath(context.get("compile_cache_path") or "./compile_cache")


def _use_folder(path):
    if _FOLDER_IN_USE and _FOLDER_IN_USE[0] != path:
        logger.info("compile cache: not used (this process already caches to %s, and MindSpore keeps the first "
                    "folder)", _FOLDER_IN_USE[0])
        return {"enable_compile_cache": False} if ms.get_context("enable_compile_cache") else {}
    logger.info("compile cache: %s (%s)", path, "reused" if os.path.isdir(path) else "new")
    _FOLDER_IN_USE[:] = [path]
    return {"enable_compile_cache": True, "compile_cache_path": path}


def predict_compile_cache(config, batches, new_tokens):
    """Turn on the compile cache for a predict run whose batches hold prompts of these token lengths (a list of
    lists), continued by up to `new_tokens` tokens: its graphs and their order are fixed by the config, the code and
    those lengths (generation compiles prefill and decode together when the cache is on, so where a row stops does
    not change the order). A no-op unless context.enable_compile_cache."""
    context = config.get("context") or {}
    if not context.get("enable_compile_cache"):
        return
    plan = hashlib.sha256(json.dumps([batches, new_tokens]).encode()).hexdigest()[:16]
    folder = os.path.join(_cache_root(context), f"{config_digest(config)}-{plan}")
    ms.set_context(**_use_folder(folder))


def compile_cache_on():
    return bool(ms.get_context("enable_compile_cache"))
