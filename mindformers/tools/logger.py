"""The project's logger: one line per record on stdout, and a copy in <output_dir>/log/rank_<r>/info.log."""
import logging
import os
import sys

logger = logging.getLogger("mindformers")
_FORMAT = "%(asctime)s [%(levelname)s] %(message)s"


class CurrentStdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is when a record is emitted, not the stream of when logging was set up: a
    caller that swaps stdout (pytest's capture, a redirecting wrapper) and closes its stream leaves no dead handle."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value):
        pass


def setup_logging(output_dir=None, rank_id=0, level=logging.INFO):
    logger.setLevel(level)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    console = CurrentStdoutHandler()
    console.setFormatter(logging.Formatter(_FORMAT, "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(console)
    if output_dir:
        log_dir = os.path.join(output_dir, "log", f"rank_{rank_id}")
        os.makedirs(log_dir, exist_ok=True)
        file_handler = logging.FileHandler(os.path.join(log_dir, "info.log"))
        file_handler.setFormatter(logging.Formatter(_FORMAT))
        logger.addHandler(file_handler)
    return logger
