"""Who am I in a distributed run: communication init (msrun workers) and rank / world size."""
import os

from mindformers.parallel.mesh import rank_coordinates
from mindformers.tools.errors import ConfigError

# msrun (and MindSpore's dynamic cluster) hand every worker these; without them init() would wait for peers.
_LAUNCH_VARIABLES = ("MS_WORKER_NUM", "RANK_TABLE_FILE")


def launched_distributed():
    return any(os.environ.get(name) for name in _LAUNCH_VARIABLES)


def init_communication():
    """mindspore.communication.init(); returns (rank_id, world_size)."""
    if not launched_distributed():
        raise ConfigError("use_parallel: True needs a distributed launch: bash scripts/msrun_launcher.sh "
                          "\"run_mindformer.py ... --use_parallel True\" WORKER_NUM")
    # MindSpore's CPU collectives stop waiting for a peer after a short time; pipeline stages compile different
    # graphs (and run different work) between two transfers, so a stage may wait for its neighbour for minutes.
    os.environ.setdefault("MS_CPU_COMM_OP_TIMEOUT", "1800")
    from mindspore.communication import init  # pylint: disable=import-outside-toplevel
    init()
    return rank_and_size()


def rank_and_size():
    """(rank_id, world_size) of this process; (0, 1) when communication is not initialised."""
    from mindspore.communication import GlobalComm, get_group_size, get_rank  # noqa: E501 pylint: disable=import-outside-toplevel
    if not GlobalComm.INITED:
        return 0, 1
    return get_rank(), get_group_size()


def data_parallel_rank(rank_id, settings):
    """Index of this rank's data-parallel replica in MindSpore's (stage, data, model) device order."""
    return rank_coordinates(rank_id, settings.mesh())[1]
