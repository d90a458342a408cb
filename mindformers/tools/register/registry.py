"""The class registry: every buildable part of a run is found here by its YAML `type:` name."""
import difflib
import inspect
from enum import Enum

from mindformers.tools.errors import ConfigError
from mindformers.tools.register.value_spec import BOOL, DICT, FLOAT, INT, LIST, STR, Value, is_plain


class MindFormerModuleType(str, Enum):
    """The kinds of parts a config can build."""

    MODELS = "models"
    CONFIG = "config"
    TOKENIZER = "tokenizer"
    PROCESSOR = "processor"
    DATASET = "dataset"
    DATASET_LOADER = "dataset_loader"
    TRANSFORMS = "transforms"
    OPTIMIZER = "optimizer"
    LR = "lr"
    WRAPPER = "wrapper"
    LOSS_SCALE = "loss_scale"
    CALLBACK = "callback"
    METRIC = "metric"
    LOSS = "loss"
    TRAINER = "trainer"
    PIPELINE = "pipeline"
    TOOLS = "tools"


class MindFormerRegister:
    """Maps (module type, class name) to classes; `register` is the decorator that fills it."""

    registry = {}
    declared_values = {}  # class -> {argument: Value}, given at registration (see argument_specs)

    @classmethod
    def register(cls, module_type=MindFormerModuleType.TOOLS, alias=None, value_specs=None):
        """Decorator. `value_specs` maps argument names to the Value (kind, range, choices) a config may give them;
        subclasses inherit them."""
        def decorator(register_class):
            names = [register_class.__name__] + ([alias] if alias else [])
            table = cls.registry.setdefault(MindFormerModuleType(module_type), {})
            for name in names:
                table[name] = register_class
            if value_specs:
                cls.declared_values[register_class] = dict(value_specs)
            return register_class

        return decorator

    @classmethod
    def register_cls(cls, register_class, module_type=MindFormerModuleType.TOOLS, alias=None, value_specs=None):
        return cls.register(module_type, alias, value_specs)(register_class)

    @classmethod
    def is_exist(cls, module_type, class_name):
        return class_name in cls.registry.get(MindFormerModuleType(module_type), {})

    @classmethod
    def names(cls, module_type):
        return sorted(cls.registry.get(MindFormerModuleType(module_type), {}))

    @classmethod
    def get_cls(cls, module_type, class_name, where=None):
        module_type = MindFormerModuleType(module_type)
        table = cls.registry.get(module_type, {})
        if class_name in table:
            return table[class_name]
        close = difflib.get_close_matches(str(class_name), table.keys(), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        place = f"{where}: " if where else ""
        raise ConfigError(
            f"{place}unknown {module_type.value} type '{class_name}'{hint} "
            f"(registered: {', '.join(sorted(table)) or 'none'})")

    @classmethod
    def get_instance_from_cfg(cls, cfg, module_type, default_args=None, where=None):
        """Build the class named by cfg['type'] with the other keys (and default_args) as arguments.

        Keys the constructor does not take are an error that names the key path, unless the
        constructor accepts **kwargs.
        """
        if cfg is None:
            raise ConfigError(f"{where or module_type}: missing section (expected a mapping with 'type')")
        args = dict(cfg)
        if "type" not in args:
            raise ConfigError(f"{where or module_type}: missing key 'type' (one of {cls.names(module_type)})")
        obj_cls = cls.get_cls(module_type, args.pop("type"), where=f"{where}.type" if where else None)
        if default_args:
            for key, value in default_args.items():
                args.setdefault(key, value)
        check_arguments(obj_cls, args, where or module_type)
        check_argument_values(obj_cls, {key: value for key, value in args.items() if is_plain(value)},
                              where or module_type, module_type)
        return obj_cls(**args)

    @classmethod
    def get_instance(cls, module_type, class_name, *args, **kwargs):
        return cls.get_cls(module_type, class_name)(*args, **kwargs)


def check_arguments(obj_cls, args, where):
    """Fail with the key path when a config key is not an argument of the class it builds."""
    params = _signature(obj_cls)
    if not params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [name for name in params if name != "self"]
    for key in args:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"{where}.{key}: unknown key for {obj_cls.__name__}{hint} (expected one of: {', '.join(accepted)})")


# Model configs check their own fields together (sizes that must divide each other, dtypes, rope scaling), and a
# model takes a built config: their undeclared arguments are not held to the kind of their default.
_SELF_CHECKING = (MindFormerModuleType.CONFIG, MindFormerModuleType.MODELS)
_KIND_OF_DEFAULT = ((bool, BOOL), (int, INT), (float, FLOAT), (str, STR), ((list, tuple), LIST), (dict, DICT))


def _signature(obj_cls):
    target = obj_cls.__init__ if inspect.isclass(obj_cls) else obj_cls
    try:
        return inspect.signature(target).parameters
    except (TypeError, ValueError):
        return {}


def argument_specs(obj_cls, module_type=None):
    """{argument: Value} for obj_cls: what it (or a base class) declared when registering, else the kind of the
    argument's default (an integer default takes integers, a float default numbers, ...; null stays allowed)."""
    declared = {}
    for klass in reversed(inspect.getmro(obj_cls) if inspect.isclass(obj_cls) else (obj_cls,)):
        declared.update(MindFormerRegister.declared_values.get(klass, {}))
    specs = {}
    infer = module_type is None or MindFormerModuleType(module_type) not in _SELF_CHECKING
    for name, param in _signature(obj_cls).items():
        if name in declared:
            specs[name] = declared[name]
        elif infer and param.default is not inspect.Parameter.empty and param.default is not None:
            kind = next((kind for types, kind in _KIND_OF_DEFAULT if isinstance(param.default, types)), None)
            if kind is not None:
                specs[name] = Value(kind)
    return specs


def check_argument_values(obj_cls, args, where, module_type=None):
    """Fail with the key path when a config value is not of its argument's kind or outside its declared range."""
    specs = argument_specs(obj_cls, module_type)
    for key, value in args.items():
        if key in specs:
            specs[key].check(value, f"{where}.{key}", None)


def build_from_config(cfg, module_type, default_args=None, where=None):
    """The one build function: any registered class from a config mapping with a `type:` key."""
    return MindFormerRegister.get_instance_from_cfg(cfg, module_type, default_args=default_args, where=where)
