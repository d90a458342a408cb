from mindformers.core.context.build_context import build_context, set_seed
