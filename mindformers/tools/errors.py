"""Errors meant for people: one line, a non-zero exit, no traceback."""
import argparse
import errno
import functools
import os
import signal
import sys


class MindFormerUserError(Exception):
    """A mistake in the user's input (config, path, data, flag). Printed as one line, exit code 2."""

    exit_code = 2


class ConfigError(MindFormerUserError):
    """A YAML file or CLI flag that does not fit the schema."""


class DataError(MindFormerUserError):
    """Input data (text, MindRecord, tokenizer files) that cannot be used."""


class RunFault(MindFormerUserError):
    """A run that cannot go on for a reason outside its input (disk full, data changed under it, a loss that stays
    non-finite): one line, exit code 1, nothing half-written, the newest complete checkpoint kept."""

    exit_code = 1


class RunInterrupted(MindFormerUserError):
    """SIGTERM or Ctrl-C: the run saved where it was and stopped; exit code 128 + the signal number."""

    prefix = "stopped"

    def __init__(self, message, signal_number):
        super().__init__(message)
        self.exit_code = 128 + int(signal_number)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is a one-line error with exit code 2 (argparse's own code) and no usage dump
    (the entry point must be wrapped in exit_on_user_error)."""

    def error(self, message):
        raise ConfigError(f"{self.prog}: {message}")


def format_user_error(error):
    return f"{getattr(error, 'prefix', 'error')}: {error}"


def out_of_space_reason(error):
    """'No space left on device' (or the quota's, or the file-size limit's words) when `error` says the disk is
    full; None for any other error."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return error.strerror or os.strerror(error.errno)
    return None


def out_of_space_message(error):
    """One line for an OSError that means the disk is full; None for others."""
    reason = out_of_space_reason(error)
    if reason is None:
        return None
    return f"{error.filename}: cannot write: {reason}" if error.filename else f"cannot write: {reason}"


def exit_on_user_error(main):
    """Decorate a CLI entry point so user errors print one line and exit 2 instead of a traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except MindFormerUserError as error:
            print(format_user_error(error), file=sys.stderr, flush=True)
            sys.exit(error.exit_code)
        except OSError as error:
            message = out_of_space_message(error)
            if message is None:
                raise
            print(f"error: {message}", file=sys.stderr, flush=True)
            sys.exit(RunFault.exit_code)
        except KeyboardInterrupt:
            print("stopped: interrupted (Ctrl-C)", file=sys.stderr, flush=True)
            sys.exit(128 + signal.SIGINT)

    return wrapper
