"""Errors meant for people: one line, a non-zero exit, no traceback."""
import functools
import sys


class MindFormerUserError(Exception):
    """A mistake in the user's input (config, path, data, flag). Printed as one line, exit code 2."""

    exit_code = 2


class ConfigError(MindFormerUserError):
    """A YAML file or CLI flag that does not fit the schema."""


class DataError(MindFormerUserError):
    """Input data (text, MindRecord, tokenizer files) that cannot be used."""


def format_user_error(error):
    return f"error: {error}"


def exit_on_user_error(main):
    """Decorate a CLI entry point so user errors print one line and exit 2 instead of a traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except MindFormerUserError as error:
            print(format_user_error(error), file=sys.stderr, flush=True)
            sys.exit(error.exit_code)

    return wrapper
