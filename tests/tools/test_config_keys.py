"""No accepted-but-ignored config keys: every key of every shipped config (and of the MindFormers-shaped configs in
tests/fixtures/mindformers_configs) is read by the code, or is a not-implemented key at its neutral value (refused
otherwise), or an execution-only setting named in the run's log.

"Read" is checked on the source: a key of a fixed section must be looked up somewhere outside the declarations
(config_schema.py, unsupported_keys.py); a key of a registered class's section must be an argument its constructor
uses (not just deletes), and an argument stored as `self.<name>` must be read back somewhere.
"""
import ast
import functools
import glob
import inspect
import os
import textwrap

import pytest

import mindformers  # noqa: F401  (registers every class)
from mindformers.run import register_path
from mindformers.tools.errors import ConfigError
from mindformers.tools.register import MindFormerConfig, MindFormerModuleType, MindFormerRegister
from mindformers.tools.register.unsupported_keys import NO_EFFECT, UNIMPLEMENTED, check_unimplemented

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DECLARATIONS = ("config_schema.py", "unsupported_keys.py")
MINDFORMERS_SHAPED = os.path.join(REPO, "tests", "fixtures", "mindformers_configs")


def product_sources():
    paths = glob.glob(os.path.join(REPO, "mindformers", "**", "*.py"), recursive=True)
    return [p for p in paths + [os.path.join(REPO, "run_mindformer.py")] if os.path.basename(p) not in DECLARATIONS]


def names_read(tree):
    """String constants and attribute names the code looks up (docstrings excluded)."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found.add(node.value)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            found.add(node.attr)
    return found


@pytest.fixture(scope="module")
def code_reads():
    """{"files": ((path, names read), ...), "*": every name read anywhere}."""
    reads = []
    for path in product_sources():
        with open(path, encoding="utf-8") as stream:
            reads.append((path, frozenset(names_read(ast.parse(stream.read())))))
    return {"files": tuple(reads), "*": set().union(*(names for _, names in reads))}


def table_entry(table, section, key, class_name=None):
    wanted = f"callbacks:{class_name}" if class_name else section
    return next((e for e in table if e.section == wanted and e.key == key), None)


def register_research_models():
    for folder in sorted(glob.glob(os.path.join(REPO, "research", "*", "__init__.py"))):
        register_path(os.path.dirname(folder))


register_research_models()


def shipped_configs():
    found = glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True)
    found += glob.glob(os.path.join(REPO, "research", "**", "*.yaml"), recursive=True)
    found += glob.glob(os.path.join(MINDFORMERS_SHAPED, "*.yaml"))
    return sorted(found)


@functools.lru_cache(maxsize=None)
def class_reads(cls):
    return names_read(ast.parse(textwrap.dedent(inspect.getsource(cls))))


@functools.lru_cache(maxsize=None)
def constructor_use(cls, param):
    """'used' when the constructor reads the argument other than to delete it; 'stored:<attr>' when it only keeps
    it as self.<attr>; 'unused' otherwise."""
    init = cls.__init__
    tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
    function = tree.body[0]
    deleted = {id(t) for node in ast.walk(function) if isinstance(node, ast.Delete) for t in node.targets}
    stored, other = [], False
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name) and node.value.id == param:
            stored += [t.attr for t in node.targets if isinstance(t, ast.Attribute)]
        elif isinstance(node, ast.Name) and node.id == param and isinstance(node.ctx, ast.Load) \
                and id(node) not in deleted:
            other = True
    if stored:
        # `self.x = x` counts as a use only through later reads of the attribute; an argument also used otherwise
        # (passed on, validated into something else) counts as used directly.
        plain = sum(1 for node in ast.walk(function) if isinstance(node, ast.Name) and node.id == param
                    and isinstance(node.ctx, ast.Load) and id(node) not in deleted)
        return "used" if plain > len(stored) else f"stored:{stored[0]}"
    return "used" if other else "unused"


def argument_owner(cls, key):
    """The class of cls's MRO whose constructor names `key` (a subclass taking **kwargs hands them on)."""
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        if key in params:
            return klass
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return None
    return None


def typed_sections(config):
    """(key path, module type, section mapping) of every registered-class section in a merged config."""
    model = config.get("model") or {}
    found = [("model.model_config", MindFormerModuleType.CONFIG, model.get("model_config")),
             ("model.arch", MindFormerModuleType.MODELS, model.get("arch")),
             ("optimizer", MindFormerModuleType.OPTIMIZER, config.get("optimizer")),
             ("lr_schedule", MindFormerModuleType.LR, config.get("lr_schedule")),
             ("runner_wrapper", MindFormerModuleType.WRAPPER, config.get("runner_wrapper")),
             ("trainer", MindFormerModuleType.TRAINER, config.get("trainer")),
             ("processor.tokenizer", MindFormerModuleType.TOKENIZER, (config.get("processor") or {}).get("tokenizer"))]
    wrapper = config.get("runner_wrapper") or {}
    if isinstance(wrapper.get("scale_sense"), dict):
        found.append(("runner_wrapper.scale_sense", MindFormerModuleType.LOSS_SCALE, wrapper["scale_sense"]))
    for list_key in ("callbacks", "eval_callbacks"):
        found += [(f"{list_key}[{i}]", MindFormerModuleType.CALLBACK, item)
                  for i, item in enumerate(config.get(list_key) or [])]
    metric = config.get("metric")
    found += [(f"metric[{i}]", MindFormerModuleType.METRIC, item)
              for i, item in enumerate(metric if isinstance(metric, list) else [metric] if metric else [])]
    for section in ("train_dataset", "eval_dataset"):
        found.append((f"{section}_task", MindFormerModuleType.DATASET,
                      {k: v for k, v in (config.get(f"{section}_task") or {}).items() if k != "dataset_config"}))
        found.append((f"{section}.data_loader", MindFormerModuleType.DATASET_LOADER,
                      (config.get(section) or {}).get("data_loader")))
    return [(path, kind, section) for path, kind, section in found if section]


FIXED_SECTIONS = ("", "context", "parallel", "parallel_config", "recompute_config", "runner_config",
                  "train_dataset", "eval_dataset", "processor")
TYPED_INSIDE_FIXED = {("", "model"), ("", "optimizer"), ("", "lr_schedule"), ("", "runner_wrapper"), ("", "trainer"),
                      ("", "callbacks"), ("", "eval_callbacks"), ("", "metric"), ("", "train_dataset_task"),
                      ("", "eval_dataset_task"), ("train_dataset", "data_loader"), ("eval_dataset", "data_loader"),
                      ("processor", "tokenizer")}


def fixed_keys(config):
    """(section, key, value) of the fixed sections' own keys (nested mappings such as jit_config included)."""
    for section in FIXED_SECTIONS:
        node = config if not section else config.get(section)
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if section == "" and key in FIXED_SECTIONS:
                continue
            yield section, key, value
            if isinstance(value, dict) and (section, key) not in TYPED_INSIDE_FIXED:
                for inner in value:
                    yield f"{section}.{key}".lstrip("."), inner, value[inner]


@functools.lru_cache(maxsize=None)
def reads_outside(source_file, attr, all_files):
    return any(attr in reads for file, reads in all_files if file != source_file)


def unread_keys(config, code_reads):
    all_reads = code_reads["*"]
    files = code_reads["files"]
    problems = []
    for section, key, _ in fixed_keys(config):
        if (section, key) in TYPED_INSIDE_FIXED or key == "base_config":
            continue
        if table_entry(UNIMPLEMENTED, section, key) or table_entry(NO_EFFECT, section, key):
            continue
        if key not in all_reads:
            problems.append(f"{section}.{key}".lstrip("."))
    for where, kind, section in typed_sections(config):
        cls = MindFormerRegister.get_cls(kind, section["type"]) if "type" in section else None
        if cls is None:
            continue
        for key in section:
            if key == "type" or table_entry(UNIMPLEMENTED, where.split("[")[0], key, cls.__name__ if kind ==
                                            MindFormerModuleType.CALLBACK else None):
                continue
            owner = argument_owner(cls, key)
            if owner is None:
                problems.append(f"{where}.{key} (not an argument of {cls.__name__})")
                continue
            use = constructor_use(owner, key)
            if use == "unused":
                problems.append(f"{where}.{key} (unused by {cls.__name__})")
            elif use.startswith("stored:"):
                attr = use.split(":", 1)[1]
                if not (attr in class_reads(owner) or reads_outside(inspect.getsourcefile(owner), attr, files)):
                    problems.append(f"{where}.{key} (stored by {cls.__name__}, never read)")
    return problems


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: os.path.relpath(p, REPO))
def test_every_key_is_read_or_declared(path, code_reads):
    config = MindFormerConfig(path)
    check_unimplemented(config, path)  # shipped configs keep not-implemented keys at their neutral values
    assert unread_keys(config, code_reads) == []


def test_the_walk_finds_an_ignored_key(tmp_path, code_reads):
    """The check itself: a key that nothing reads, in a fixed section and in a class section, is reported."""
    path = tmp_path / "ignored.yaml"
    path.write_text(f"base_config: ['{REPO}/configs/llama2/pretrain_llama2_tiny.yaml']\n"
                    "callbacks:\n  - type: SummaryMonitor\n    max_file_size: 10\n", encoding="utf-8")
    assert unread_keys(MindFormerConfig(str(path)), code_reads) == []
    from mindformers.tools.register import config_schema
    config_schema.RUNNER_CONFIG["nobody_reads_this"] = config_schema.INT
    try:
        path.write_text(f"base_config: ['{REPO}/configs/llama2/pretrain_llama2_tiny.yaml']\n"
                        "runner_config:\n  nobody_reads_this: 3\n", encoding="utf-8")
        assert unread_keys(MindFormerConfig(str(path)), code_reads) == ["runner_config.nobody_reads_this"]
    finally:
        del config_schema.RUNNER_CONFIG["nobody_reads_this"]


NON_NEUTRAL = [
    ("model:\n  model_config:\n    offset: [1, 0]\n", "model.model_config.offset"),
    ("model:\n  model_config:\n    fine_grain_interleave: 2\n", "model.model_config.fine_grain_interleave"),
    ("model:\n  model_config:\n    pp_interleave_num: 2\n", "model.model_config.pp_interleave_num"),
    ("model:\n  model_config:\n    use_rope_slice: True\n", "model.model_config.use_rope_slice"),
    ("parallel_config:\n  context_parallel: 2\n", "parallel_config.context_parallel"),
    ("do_eval: True\n", "do_eval"),
    ("layer_scale: True\n", "layer_scale"),
    ("callbacks:\n  - type: MFLossMonitor\n    global_batch_size: 64\n", "callbacks[0].global_batch_size"),
    ("callbacks:\n  - type: CheckpointMointor\n    remove_redundancy: True\n", "callbacks[0].remove_redundancy"),
]


@pytest.mark.parametrize("override,key", NON_NEUTRAL, ids=[key for _, key in NON_NEUTRAL])
def test_not_implemented_values_are_refused(tmp_path, override, key):
    path = tmp_path / "user.yaml"
    path.write_text(f"base_config: ['{REPO}/configs/llama2/pretrain_llama2_tiny.yaml']\n{override}",
                    encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        check_unimplemented(MindFormerConfig(str(path)), str(path))
    message = str(error.value)
    assert "\n" not in message and f": {key}: " in message and "not implemented" in message


def test_neutral_values_pass(tmp_path):
    path = tmp_path / "user.yaml"
    path.write_text(f"base_config: ['{REPO}/configs/llama2/pretrain_llama2_tiny.yaml']\n"
                    "model:\n  model_config:\n    moe_config: {expert_num: 1}\n    offset: 0\n    qkv_concat: False\n"
                    "layer_scale: False\nlayer_decay: 0.65\nlr_scale_factor: 256\n", encoding="utf-8")
    check_unimplemented(MindFormerConfig(str(path)), str(path))
