"""AdamW with the usual parameter groups: no weight decay on norms, biases and other 1-D parameters."""
from mindspore import nn

from mindformers.tools.register import MindFormerModuleType, MindFormerRegister
from mindformers.tools.register.value_spec import FLOAT, LIST, NON_NEGATIVE_NUMBER, POSITIVE_NUMBER, Value

BETA = Value(FLOAT, min=0, below=1, nullable=False)
# learning_rate is checked when the YAML gives a number (a schedule from lr_schedule is built by the trainer)
ADAM_VALUES = {"learning_rate": NON_NEGATIVE_NUMBER, "betas": Value(LIST, items=BETA, length=2, nullable=False),
               "beta1": BETA, "beta2": BETA, "eps": POSITIVE_NUMBER, "weight_decay": NON_NEGATIVE_NUMBER}


def decays(param):
    """Matrices decay; norm scales and biases (1-D) do not."""
    return len(param.shape) > 1 and "norm" not in param.name and not param.name.endswith(".bias")


def weight_decay_groups(params, weight_decay):
    decay = [p for p in params if decays(p)]
    no_decay = [p for p in params if not decays(p)]
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


@MindFormerRegister.register(MindFormerModuleType.OPTIMIZER, value_specs=ADAM_VALUES)
class AdamW(nn.AdamWeightDecay):
    """MindSpore's fused AdamWeightDecay, configured the way MindFormers' YAML spells it (betas, eps)."""

    def __init__(self, params, learning_rate=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        beta1, beta2 = (float(b) for b in betas)
        super().__init__(weight_decay_groups(list(params), float(weight_decay)), learning_rate=learning_rate,
                         beta1=beta1, beta2=beta2, eps=float(eps))
