"""--use_parallel True: communication init, and on Ascend the semi-auto parallel context (build_context calls this)."""
import logging

from mindformers.parallel.parallel_check import parallel_settings
from mindformers.parallel.world import init_communication

logger = logging.getLogger("mindformers")


def init_parallel(config, device_target):
    """Returns (rank_id, world_size). On CPU the graph stays stand-alone: data parallelism is the explicit
    gradient all-reduce of the train step (mindformers/wrapper/grad_reducer.py)."""
    rank_id, world_size = init_communication()
    if device_target != "CPU":
        from mindformers.parallel.ascend_parallel import set_semi_auto_parallel  # pylint: disable=import-outside-toplevel
        set_semi_auto_parallel(config, parallel_settings(config), world_size)
    logger.info("distributed: rank %d of %d (%s)", rank_id, world_size, device_target)
    return rank_id, world_size
