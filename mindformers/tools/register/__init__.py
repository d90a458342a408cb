"""Registry and config: how YAML becomes objects."""
from mindformers.tools.register.registry import (MindFormerModuleType, MindFormerRegister, build_from_config,
                                                 check_arguments)
from mindformers.tools.register.config import MindFormerConfig

__all__ = ["MindFormerModuleType", "MindFormerRegister", "MindFormerConfig", "build_from_config", "check_arguments"]
