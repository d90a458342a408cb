"""Checks of a run's inputs that no single section owns, made before anything is written: where the outputs go,
and a generation length the model's KV cache can never hold."""
import os

from mindformers.tools.errors import ConfigError


def check_output_dir(output_dir, key="output_dir"):
    """The folder must be creatable and writable: its nearest existing ancestor is a folder we may write in."""
    path = os.path.abspath(os.path.expanduser(str(output_dir)))
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"{key}: {output_dir}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: {output_dir}: cannot write in {existing} (permission denied)")
    return path


def check_max_new_tokens(config):
    """max_new_tokens (YAML or --max_new_tokens) must leave a prompt room in seq_length tokens, which the KV cache
    holds (prompt + new tokens); a value that fits only short prompts is cut per prompt, with a warning."""
    wanted = config.get("max_new_tokens")
    seq_length = ((config.get("model") or {}).get("model_config") or {}).get("seq_length")
    if isinstance(wanted, int) and isinstance(seq_length, int) and wanted >= seq_length:
        raise ConfigError(f"max_new_tokens: {wanted} new tokens do not fit the model's seq_length {seq_length} "
                          f"(model.model_config.seq_length: prompt + new tokens); expected at most {seq_length - 1}")
