"""Tools: registry, config, errors, preprocessing."""
from mindformers.tools.errors import ConfigError, DataError, MindFormerUserError
from mindformers.tools.register import MindFormerConfig, MindFormerModuleType, MindFormerRegister, build_from_config
