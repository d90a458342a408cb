"""SummaryMonitor: MindSpore summary files (MindInsight's format) with the training scalars."""
import os

from mindformers.core.callback.callback import Callback
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister

SCALARS = ("loss", "lr", "grad_norm", "loss_scale")


@MindFormerRegister.register(MindFormerModuleType.CALLBACK)
class SummaryMonitor(Callback):
    """Every `collect_freq` steps records loss, lr, grad_norm and loss_scale with MindSpore's SummaryRecord into
    `summary_dir` (default <output_dir>/summary/rank_<r>). MindFormers' options for collecting tensors, lineage and
    exports keep their neutral values (tools/register/unsupported_keys.py)."""

    def __init__(self, summary_dir=None, collect_freq=10, collect_specified_data=None, keep_default_action=True,
                 custom_lineage_data=None, collect_tensor_freq=None, max_file_size=None, export_options=None):
        del collect_specified_data, keep_default_action, custom_lineage_data, collect_tensor_freq, export_options
        self.summary_dir = summary_dir
        self.collect_freq = max(1, int(collect_freq))
        self.max_file_size = max_file_size
        self.record = None

    def on_train_begin(self, state):
        from mindspore.train.summary import SummaryRecord  # pylint: disable=import-outside-toplevel
        folder = self.summary_dir or os.path.join(state.output_dir, "summary", f"rank_{state.rank_id}")
        os.makedirs(folder, exist_ok=True)
        self.record = SummaryRecord(folder, max_file_size=self.max_file_size)

    def on_step_end(self, state):
        if state.global_step % self.collect_freq and state.global_step != state.total_steps:
            return
        import numpy as np  # pylint: disable=import-outside-toplevel
        from mindspore import Tensor  # pylint: disable=import-outside-toplevel
        for name in SCALARS:
            self.record.add_value("scalar", name, Tensor(np.float32(getattr(state, name))))
        self.record.record(state.global_step)

    def on_train_end(self, state):
        if self.record is not None:
            self.record.close()
            self.record = None
