"""MindFormerConfig: YAML files joined through `base_config`, then CLI overrides, then schema checks."""
import copy
import os

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mindformers.tools.errors import ConfigError
from mindformers.tools.register.config_schema import validate_section_tree


class MindFormerConfig(dict):
    """A dict with attribute access, built from a YAML chain.

    ``MindFormerConfig("run.yaml")`` loads the file and everything its `base_config` list names
    (recursively, paths relative to the naming file, cycles rejected), each later file overriding the
    ones before it. ``MindFormerConfig(**mapping)`` wraps an existing mapping.
    """

    def __init__(self, *args, **kwargs):
        super().__init__()
        if args and isinstance(args[0], (str, os.PathLike)):
            path = os.path.abspath(os.fspath(args[0]))
            merged = load_yaml_chain(path)
            self._set_tree(merged)
            dict.__setattr__(self, "_config_path", path)
        else:
            tree = dict(*args, **kwargs)
            self._set_tree(tree)
            dict.__setattr__(self, "_config_path", None)

    def _set_tree(self, tree):
        for key, value in tree.items():
            self[key] = wrap(value)

    @property
    def config_path(self):
        return self.__dict__.get("_config_path")

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            return None

    def __setattr__(self, key, value):
        self[key] = wrap(value)

    def __delattr__(self, key):
        del self[key]

    def __deepcopy__(self, memo):
        clone = MindFormerConfig()
        for key, value in self.items():
            clone[key] = copy.deepcopy(value, memo)
        dict.__setattr__(clone, "_config_path", self.config_path)
        return clone

    def to_dict(self):
        return unwrap(self)

    def merge_from_dict(self, options):
        """Apply overrides given as {'a.b.c': value}; the dotted path creates sections as needed."""
        for dotted, value in options.items():
            node = self
            keys = dotted.split(".")
            for key in keys[:-1]:
                if not isinstance(node.get(key), dict):
                    node[key] = MindFormerConfig()
                node = node[key]
            node[keys[-1]] = wrap(value)

    def where(self):
        return self.config_path or "<config>"


def wrap(value):
    if isinstance(value, MindFormerConfig):
        return value
    if isinstance(value, dict):
        return MindFormerConfig(value)
    if isinstance(value, list):
        return [wrap(item) for item in value]
    return value


def unwrap(value):
    if isinstance(value, dict):
        return {key: unwrap(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap(item) for item in value]
    return value


def _read_yaml(path, named_by):
    if not os.path.isfile(path):
        raise ConfigError(f"{named_by}: config file not found: {path}")
    try:
        node = OmegaConf.load(path)
    except (yaml.YAMLError, OmegaConfBaseException) as error:
        detail = " ".join(str(error).split())
        raise ConfigError(f"{path}: not valid YAML ({detail})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML file (not UTF-8 text)") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read it ({error.strerror})") from None
    if not OmegaConf.is_dict(node):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(node).__name__}")
    return node


def _container_kind(node):
    return "mapping" if OmegaConf.is_dict(node) else "list" if OmegaConf.is_list(node) else "value"


def _drop_replaced_kinds(base, top):
    """Remove from `base` the keys whose value `top` gives as another kind (a mapping for a list, a list for a
    value, ...): OmegaConf cannot merge those, and a later file's value replaces the earlier one whole."""
    for key in top.keys():
        if key not in base:
            continue
        old, new = base._get_node(key), top._get_node(key)  # pylint: disable=protected-access
        if OmegaConf.is_dict(old) and OmegaConf.is_dict(new):
            _drop_replaced_kinds(old, new)
        elif _container_kind(old) != _container_kind(new):
            del base[key]


def override(base, top):
    """`top` merged over `base` (mappings key by key, anything else replaced), e.g. `metric: [...]` over a shipped
    `metric: {type: ...}`."""
    base = copy.deepcopy(base)
    _drop_replaced_kinds(base, top)
    return OmegaConf.merge(base, top)


def load_yaml_chain(path, named_by="--config", _stack=()):
    """Load `path` with its base_config chain merged underneath it, checking each file on its own."""
    if path in _stack:
        chain = " -> ".join(_stack + (path,))
        raise ConfigError(f"{_stack[-1]}: base_config cycle: {chain}")
    node = _read_yaml(path, named_by)
    bases = node.pop("base_config", None) if "base_config" in node else None
    own = OmegaConf.to_container(node, resolve=False)
    validate_section_tree(own, path)
    if bases is None:
        bases = []
    elif isinstance(bases, str) or OmegaConf.is_config(bases) is False and not isinstance(bases, (list, tuple)):
        bases = [bases]
    else:
        bases = list(OmegaConf.to_container(bases)) if OmegaConf.is_config(bases) else list(bases)
    merged = OmegaConf.create({})
    for index, base in enumerate(bases):
        if not isinstance(base, str) or not base:
            raise ConfigError(f"{path}: base_config[{index}]: expected a file path, got {base!r}")
        base_path = base if os.path.isabs(base) else os.path.join(os.path.dirname(path), base)
        base_tree = load_yaml_chain(os.path.abspath(base_path), f"{path}: base_config[{index}]", _stack + (path,))
        merged = override(merged, base_tree)
    merged = override(merged, node)
    try:
        return OmegaConf.to_container(merged, resolve=True) if not _stack else merged
    except OmegaConfBaseException as error:
        detail = " ".join(str(error).split())
        raise ConfigError(f"{path}: cannot resolve interpolation ({detail})") from None
