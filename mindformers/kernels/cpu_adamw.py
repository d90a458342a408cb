"""One AdamWeightDecay step over all float32 parameters, in place (cpu_adamw.cc as a MindSpore "aot" Custom op), with
the train step's gradient factor (unscaling and clipping) folded in: what core/optim/adamw.py runs on CPU, where
MindSpore's update is an operator per parameter after a separate pass that multiplies every gradient."""
import mindspore as ms
import mindspore.ops.signature as sig
from mindspore import nn, ops

from mindformers.kernels import build

SOURCE = "cpu_adamw.cc"


def available(dtypes):
    """Whether the kernel can update parameters and moments of `dtypes` here (build.serves)."""
    return build.serves(SOURCE, dtypes)


def update_op(count, library):
    """The Custom op for `count` parameters. A Custom op has no outputs that alias its inputs; its signature marks
    the parameters and moments written instead (as MindSpore's own optimizer operators mark theirs), so MindSpore
    hands the op their storage and orders every later read of them after it."""
    written = [sig.make_sig(f"{kind}{index}", sig.sig_rw.RW_WRITE)
               for kind in ("param", "m", "v") for index in range(count)]
    read = [sig.make_sig(f"grad{index}") for index in range(count)] + [
        sig.make_sig(name) for name in ("decay", "lr", "scale", "config")]
    op_class = type("CpuAdamWUpdate", (ops.Custom,), {"__mindspore_signature__": tuple(written + read)})
    op = op_class(f"{library}:AdamW", out_shape=build.one_value, out_dtype=build.float32, func_type="aot")
    op.add_prim_attr("side_effect_mem", True)
    return op


class CpuAdamW(nn.Cell):
    """construct(params, moments1, moments2, grads, lr, scale): updates params and moments in place; returns a
    float32 (1,) tensor to depend on. `decay_rates` is each parameter's weight decay (0 for those without)."""

    def __init__(self, count, decay_rates, beta1, beta2, eps, library=None):
        super().__init__()
        self.update = update_op(count, library or build.library(SOURCE))
        self.decay_rates = ms.Tensor([float(rate) for rate in decay_rates], ms.float32)
        self.config = ms.Tensor([float(build.kernel_threads()), beta1, beta2, eps], ms.float32)

    def construct(self, params, moments1, moments2, grads, lr, scale):
        return self.update(*params, *moments1, *moments2, *grads, self.decay_rates, ops.cast(lr, ms.float32),
                           ops.cast(scale, ms.float32), self.config)
