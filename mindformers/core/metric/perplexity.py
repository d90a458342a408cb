"""PerplexityMetric: exp of the mean negative log-likelihood over every target token of the eval set."""
import math

import numpy as np
from mindspore import Tensor
from mindspore.train import Metric

from mindformers.core.loss import CrossEntropyLoss
from mindformers.tools.errors import DataError
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister


def as_tensor(value):
    return value if isinstance(value, Tensor) else Tensor(np.asarray(value))


@MindFormerRegister.register(MindFormerModuleType.METRIC)
class PerplexityMetric(Metric):
    """`update(logits, labels, input_mask)` per batch (MindFormers' order): logits (batch, seq, vocab), labels
    (batch, seq) the next tokens, input_mask (batch, seq) 1 where a label counts. `eval()` returns
    {'loss': total NLL / total counted tokens, 'PPL': exp(loss)}.

    Every counted token weighs the same, whichever batch it is in: a mean of per-batch means would overweight
    batches with few valid tokens (instruction rows whose labels are mostly -100, a short last batch).
    """

    def __init__(self):
        super().__init__()
        self.loss = CrossEntropyLoss()  # the training loss: the same masked NLL, in float32
        self.clear()

    def clear(self):
        self.total_nll = 0.0
        self.total_tokens = 0

    def update(self, *inputs):
        if len(inputs) != 3:
            raise ValueError(f"PerplexityMetric.update expects (logits, labels, input_mask), got {len(inputs)} inputs")
        logits, labels, input_mask = (as_tensor(item) for item in inputs)
        count = int(np.count_nonzero(input_mask.asnumpy()))
        if count == 0:
            return
        mean_nll = float(self.loss(logits, labels.astype("int32"), input_mask).asnumpy())
        self.total_nll += mean_nll * count  # back to a sum, accumulated in float64 across batches
        self.total_tokens += count

    def eval(self):
        if self.total_tokens == 0:
            raise DataError("PerplexityMetric: no target token of the eval set counts (every label is ignored or "
                            "padding); expected rows from llama_preprocess.py")
        loss = self.total_nll / self.total_tokens
        return {"loss": loss, "PPL": math.exp(loss)}
