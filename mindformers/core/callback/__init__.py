from mindformers.core.callback.callback import Callback, TrainState
from mindformers.core.callback.checkpoint_monitor import CheckpointMonitor
from mindformers.core.callback.loss_monitor import MFLossMonitor
from mindformers.core.callback.profile_monitor import ProfileMonitor
from mindformers.core.callback.obs_monitor import ObsMonitor
from mindformers.core.callback.summary_monitor import SummaryMonitor
from mindformers.core.callback.tensorboard_monitor import TensorBoardMonitor
