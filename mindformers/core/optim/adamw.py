"""Adam with decoupled weight decay, under the three names MindFormers configs use, with the usual parameter groups:
no weight decay on norms, biases and other 1-D parameters (MindFormers groups every optimizer's parameters so).

- AdamW: MindFormers' spelling (betas, eps, weight_decay); moments in the parameter's dtype.
- AdamWeightDecay: MindSpore's nn.AdamWeightDecay spelling (beta1, beta2, eps, weight_decay); moments likewise.
- FP32StateAdamWeightDecay: the same update with the moments kept in float32 whatever the parameter dtype, so
  float16 weights do not overflow their second moment (MindFormers' default for its Llama configs).
"""
import numpy as np
import mindspore as ms
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops
from mindspore.common.initializer import initializer
from mindspore.nn.optim.adam import _check_param_value

from mindformers.kernels import cpu_adamw
from mindformers.models.modules.deferred_init import host_tensor
from mindformers.models.modules.shape_only import parameter_of
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


def zero_moment(shape, name, dtype):
    """Zeros of `shape` in `dtype`. float32 ones are written now (np.full, held without a copy): a moment from the
    "zeros" initializer took two page faults a page in its first update (np.zeros' untouched pages as many, when
    wrapped), a written one takes one, here; the first layerwise step of the 8-layer benchmark model has 226k faults
    fewer, its build 120k more (README: first_step.py). Other dtypes keep the initializer (converting would copy)."""
    if dtype == ms.float32:
        return parameter_of(host_tensor(np.full(shape, 0, np.float32), dtype), name)
    return Parameter(initializer("zeros", shape, dtype), name=name)


def zero_moments(params, prefix, dtype=None):
    """A moment per parameter, named prefix.<name>, zeros in `dtype` (default: the parameter's)."""
    return ParameterTuple(zero_moment(p.shape, f"{prefix}.{p.name}", dtype or p.dtype) for p in params)


@MindFormerRegister.register(MindFormerModuleType.OPTIMIZER, value_specs=ADAM_VALUES)
class AdamWeightDecay(nn.AdamWeightDecay):
    """MindSpore's fused AdamWeightDecay over the weight-decay groups; its update casts to float32 internally and
    writes each moment back in the moment's own dtype.

    Built as nn.AdamWeightDecay.__init__ builds it (the attributes its construct reads; mindspore is pinned to
    2.10.0) except for the moments: it clones every parameter with its data and then zeroes the clone, a copy of
    the whole model (~1 s of building the 8-layer benchmark model); here they are made as zeros."""

    moment_dtype = None  # the parameter's
    takes_grad_scale = True  # construct(gradients, grad_scale): the train step passes its factor (train_one_step.py)

    def __init__(self, params, learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.0):
        nn.Optimizer.__init__(self, learning_rate, weight_decay_groups(list(params), float(weight_decay)))
        beta1, beta2, eps = float(beta1), float(beta2), float(eps)
        _check_param_value(beta1, beta2, eps, self.cls_name)
        self.beta1 = Tensor(np.array([beta1], np.float32))
        self.beta2 = Tensor(np.array([beta2], np.float32))
        self.eps = Tensor(np.array([eps], np.float32))
        self.moments1 = zero_moments(self._parameters, "adam_m", self.moment_dtype)
        self.moments2 = zero_moments(self._parameters, "adam_v", self.moment_dtype)
        self.fused_opt = ops.AdamWeightDecay()
        self.use_fused_opt = True
        self.cpu_update = self.one_update_on_cpu(beta1, beta2, eps)

    def one_update_on_cpu(self, beta1, beta2, eps):
        """The update of all parameters as one CPU kernel (kernels/cpu_adamw.py) where it serves: float32 weights
        and moments, a fixed weight decay, one learning rate, no parallel optimizer; else None."""
        dtypes = [p.dtype for p in self._parameters] + [m.dtype for m in self.moments1 + self.moments2]
        if (self.dynamic_weight_decay or self.is_group_lr or self.use_parallel or not all(self.optim_filter)
                or not cpu_adamw.available(dtypes)):
            return None
        rates = self.weight_decay if self.is_group else (self.weight_decay,) * len(self._parameters)
        decay_rates = [float(rate) if flag else 0.0 for rate, flag in zip(rates, self.decay_flags)]
        return cpu_adamw.CpuAdamW(len(self._parameters), decay_rates, beta1, beta2, eps)

    def construct(self, gradients, grad_scale=None):
        """Updates the parameters with `gradients`, each multiplied by `grad_scale` first when given (the train
        step's unscaling and clipping factor, which the CPU kernel applies in the same pass)."""
        if self.cpu_update is not None:
            lr = self.get_lr()
            self.assignadd(self.global_step, self.global_step_increase_tensor)
            scale = ops.ones((), ms.float32) if grad_scale is None else grad_scale
            return self.cpu_update(self._parameters, self.moments1, self.moments2, gradients, lr, scale)
        if grad_scale is not None:
            gradients = tuple(g * ops.cast(grad_scale, g.dtype) for g in gradients)
        return self.update_per_parameter(gradients)

    # MindSpore's update, an AdamWeightDecay operator per parameter (jit-compiled; layerwise runs it op by op)
    update_per_parameter = nn.AdamWeightDecay.construct


@MindFormerRegister.register(MindFormerModuleType.OPTIMIZER, value_specs=ADAM_VALUES)
class AdamW(AdamWeightDecay):
    """AdamWeightDecay configured the way MindFormers' AdamW spells it (betas, eps)."""

    def __init__(self, params, learning_rate=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        beta1, beta2 = (float(b) for b in betas)
        super().__init__(params, learning_rate=learning_rate, beta1=beta1, beta2=beta2, eps=eps,
                         weight_decay=weight_decay)


@MindFormerRegister.register(MindFormerModuleType.OPTIMIZER, value_specs=ADAM_VALUES)
class FP32StateAdamWeightDecay(AdamWeightDecay):
    """AdamWeightDecay whose first and second moments are float32 for every parameter (same names, adam_m.* and
    adam_v.*, so checkpoints and resharding treat them alike)."""

    moment_dtype = ms.float32
