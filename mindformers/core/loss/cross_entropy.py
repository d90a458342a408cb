"""Token-level cross entropy that ignores masked positions."""
import mindspore as ms
from mindspore import nn, ops

from mindformers.tools.register import MindFormerModuleType, MindFormerRegister


@MindFormerRegister.register(MindFormerModuleType.LOSS)
class CrossEntropyLoss(nn.Cell):
    """Mean negative log-likelihood over the positions where `mask` is 1, computed in float32."""

    def construct(self, logits, labels, mask):
        logits = ops.cast(ops.reshape(logits, (-1, logits.shape[-1])), ms.float32)
        labels = ops.reshape(labels, (-1,))
        mask = ops.cast(ops.reshape(mask, (-1,)), ms.float32)
        # Masked labels may hold ignore ids (-100): point them at class 0, their loss is multiplied by 0 anyway.
        safe_labels = ops.cast(labels * ops.cast(mask, labels.dtype), ms.int32)
        log_norm = ops.logsumexp(logits, -1)
        picked = ops.squeeze(ops.gather_elements(logits, 1, ops.expand_dims(safe_labels, -1)), -1)
        token_nll = (log_norm - picked) * mask
        return ops.sum(token_nll) / ops.maximum(ops.sum(mask), 1.0)
