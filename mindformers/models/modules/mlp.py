"""Feed-forward blocks: gated, w2(act(w1 x) * w3 x) (SwiGLU with SiLU: Llama; GeGLU with tanh-approximated GELU:
Gemma), and plain, w2(act(w1 x)) (GELU: Bloom, GPT); either with biases on every projection (`has_bias`)."""
import mindspore as ms
from mindspore import nn, ops

from mindformers.kernels import cpu_swiglu
from mindformers.models.modules.linear import ExpertLinear, Linear


def activation_cell(name):
    """The cell of an activation named as DecoderConfig.activation names it."""
    cells = {"silu": (nn.SiLU, {}), "gelu": (nn.GELU, {"approximate": False}),
             "gelu_tanh": (nn.GELU, {"approximate": True})}
    if name not in cells:
        raise ValueError(f"activation: expected one of {', '.join(cells)}, got {name!r}")
    cell, options = cells[name]
    return cell(**options)


class GatedFeedForward(nn.Cell):
    """The gate (w1) and up (w3) projections as two weights, or with `fused` as one (w_gate_hidden, the gate's rows
    first) as MindFormers' qkv_concat checkpoints store them.

    With `experts` it is that many MLPs at once, the experts of a mixture-of-experts layer: each weight gains a
    leading expert dimension and the input is (experts, rows, hidden_size)."""

    def __init__(self, hidden_size, intermediate_size, activation="silu", fused=False, compute_dtype=ms.float32,
                 param_init_type=ms.float32, init_std=0.02, has_bias=False, experts=None):
        super().__init__()
        linear = dict(compute_dtype=compute_dtype, param_init_type=param_init_type, init_std=init_std)
        if experts:  # stacked experts have no biases (Mixtral's do not; the config refuses mlp_has_bias with them)
            linear["experts"] = experts
        else:
            linear["has_bias"] = has_bias
        projection = ExpertLinear if experts else Linear
        self.fused = fused
        self.intermediate_size = intermediate_size
        if fused:
            self.w_gate_hidden = projection(hidden_size, 2 * intermediate_size, parallel="column", **linear)
        else:
            self.w1 = projection(hidden_size, intermediate_size, parallel="column", **linear)  # gate
            self.w3 = projection(hidden_size, intermediate_size, parallel="column", **linear)  # up
        self.w2 = projection(intermediate_size, hidden_size, parallel="row", **linear)  # down
        self.act = activation_cell(activation)
        # on CPU, SiLU(gate) * up in float32 is one kernel pass (kernels/cpu_swiglu.py)
        serves = activation == "silu" and compute_dtype == ms.float32 and cpu_swiglu.available(ms.float32)
        self.cpu_swiglu = cpu_swiglu.CpuSwiGLU() if serves else None

    def construct(self, x):
        if self.fused:
            gate, up = ops.split(self.w_gate_hidden(x), self.intermediate_size, -1)
        else:
            gate, up = self.w1(x), self.w3(x)
        if self.cpu_swiglu is not None:
            return self.w2(self.cpu_swiglu(gate, up))
        return self.w2(self.act(gate) * up)


class FeedForward(nn.Cell):
    """The plain MLP of GPT and Bloom: w2(act(w1 x)), w1 widening to intermediate_size and w2 projecting back."""

    def __init__(self, hidden_size, intermediate_size, activation="gelu", compute_dtype=ms.float32,
                 param_init_type=ms.float32, init_std=0.02, has_bias=True):
        super().__init__()
        linear = dict(compute_dtype=compute_dtype, param_init_type=param_init_type, init_std=init_std,
                      has_bias=has_bias)
        self.w1 = Linear(hidden_size, intermediate_size, parallel="column", **linear)  # up
        self.w2 = Linear(intermediate_size, hidden_size, parallel="row", **linear)  # down
        self.act = activation_cell(activation)

    def construct(self, x):
        return self.w2(self.act(self.w1(x)))


SwiGLUFeedForward = GatedFeedForward  # the name Llama's layer had; its default activation is still SiLU
