"""One optimizer step: gradient accumulation, loss scaling with overflow skip, global-norm clipping."""
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from mindformers.models.modules.layout import EXPERT_AXIS, parameter_splits
from mindformers.parallel.parallelize import parallel_groups_of
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister
from mindformers.tools.register.value_spec import DICT, FLOAT, INT, POSITIVE_INT, POSITIVE_NUMBER, Value
from mindformers.wrapper.grad_norm import GlobalGradNorm
from mindformers.wrapper.grad_reducer import DataParallelReducer

# MindSpore's cells do not check their arguments: a negative scale would train the wrong way without a word.
MindFormerRegister.register_cls(nn.DynamicLossScaleUpdateCell, MindFormerModuleType.LOSS_SCALE, value_specs={
    "loss_scale_value": POSITIVE_NUMBER, "scale_factor": Value(FLOAT, above=1, nullable=False),
    "scale_window": Value(INT, min=1, nullable=False)})
MindFormerRegister.register_cls(nn.FixedLossScaleUpdateCell, MindFormerModuleType.LOSS_SCALE,
                                value_specs={"loss_scale_value": POSITIVE_NUMBER})


@MindFormerRegister.register(MindFormerModuleType.WRAPPER, value_specs={
    "scale_sense": Value(FLOAT, DICT, above=0), "max_grad_norm": POSITIVE_NUMBER,
    "gradient_accumulation_steps": POSITIVE_INT})
class MFTrainOneStepCell(nn.Cell):
    """construct(input_ids[, labels]) -> (loss, overflow, loss_scale, grad_norm[, metrics]).

    A network whose training forward returns (loss, metrics) (`returns_step_metrics`: a mixture-of-experts
    model's router load and auxiliary loss) gets no gradient from the metrics; their sum over the micro-batches is
    returned last. The batch holds `gradient_accumulation_steps` micro-batches along dim 0; their gradients are summed
    and averaged before one optimizer update. With a loss-scale cell (Dynamic/FixedLossScaleUpdateCell)
    the loss is scaled before differentiation and gradients unscaled after; a step whose gradients
    overflow is skipped entirely (no weight, moment or schedule update) and the scale adapts.
    """

    def __init__(self, network, optimizer, scale_sense=None, use_clip_grad=True, max_grad_norm=1.0,
                 gradient_accumulation_steps=1):
        super().__init__(auto_prefix=False)
        self.network = network
        self.optimizer = optimizer
        self.optimizer_takes_scale = getattr(optimizer, "takes_grad_scale", False)
        self.weights = optimizer.parameters
        self.grad = ops.GradOperation(get_by_list=True, sens_param=True)
        splits = parameter_splits(network)
        groups = parallel_groups_of(network)
        # Identity in a single process.
        self.data_parallel = DataParallelReducer(groups, [EXPERT_AXIS in splits.get(p.name, {}) for p in self.weights])
        self.grad_norm = GlobalGradNorm([splits.get(p.name) for p in self.weights], groups,
                                        [p.dtype for p in self.weights])
        self.returns_step_metrics = bool(getattr(network, "returns_step_metrics", False))
        self.accumulation = int(gradient_accumulation_steps)
        self.use_clip_grad = use_clip_grad
        self.max_grad_norm = float(max_grad_norm)
        self.loss_scale_manager = None
        scale_value = 1.0
        if isinstance(scale_sense, nn.Cell):
            self.loss_scale_manager = scale_sense
            scale_value = float(scale_sense.get_loss_scale())
        elif scale_sense is not None:
            scale_value = float(scale_sense)
        self.scale_sense = Parameter(Tensor(scale_value, ms.float32), name="scale_sense")
        # Whether one forward gives the loss and the gradients: set from the mode at every call (__call__). The
        # graph path below runs the network twice, which graph mode merges into one forward and PyNative would not.
        self.forward_once = False
        self.value_and_grads = None

    def __call__(self, *args, **kwargs):
        # Per call, not per build: a cell may run in both modes (benchmarks alternate them in one process); in graph
        # mode the compiled graph reads it as the constant False.
        self.forward_once = ms.get_context("mode") == ms.PYNATIVE_MODE
        return super().__call__(*args, **kwargs)

    def loss_and_grads(self, ids, labels, scale):
        """(loss, gradients of loss x scale, metrics or None) of one micro-batch; the metrics get no gradient."""
        if self.returns_step_metrics:
            loss, metrics = self.network(ids, labels)
            sens = (ops.cast(scale, loss.dtype), ops.zeros_like(metrics))
        else:
            loss, metrics = self.network(ids, labels), None
            sens = ops.cast(scale, loss.dtype)
        return loss, self.grad(self.network, self.weights)(ids, labels, sens), metrics

    def pynative_loss_and_grads(self, ids, labels, scale):
        """loss_and_grads from one forward: d(loss x scale) starts the backward at scale, as sens=scale does."""
        if self.value_and_grads is None:
            def scaled_loss(ids, labels, scale):
                out = self.network(ids, labels)
                loss, metrics = (out[0], tuple(out[1:])) if self.returns_step_metrics else (out, ())
                return (loss * ops.cast(scale, loss.dtype), loss) + metrics
            self.value_and_grads = ms.value_and_grad(scaled_loss, None, self.weights, has_aux=True)
        (_, loss, *metrics), grads = self.value_and_grads(ids, labels, scale)
        return loss, grads, metrics[0] if metrics else None

    def clip_and_update(self, grads, loss, grad_norm, divisor):
        """Skip the step when `grad_norm` (of the unscaled gradients) is not finite (and let the loss scale adapt),
        else update the weights with grads / divisor, clipped to max_grad_norm. Returns (loss, overflow)."""
        overflow = ops.logical_not(ops.isfinite(grad_norm))
        if self.loss_scale_manager is not None:
            overflow = self.loss_scale_manager(self.scale_sense, overflow)
        factor = 1.0 / divisor
        if self.use_clip_grad:
            factor = factor * ops.minimum(1.0, self.max_grad_norm / (grad_norm + 1e-6))
        if not overflow:
            if self.optimizer_takes_scale:  # it multiplies in its own pass over the gradients
                loss = ops.depend(loss, self.optimizer(grads, factor))
            else:
                loss = ops.depend(loss, self.optimizer(tuple(g * ops.cast(factor, g.dtype) for g in grads)))
        return loss, overflow

    def micro_batch(self, data, index):
        size = data.shape[0] // self.accumulation
        return data[index * size:(index + 1) * size]

    def construct(self, input_ids, labels=None):
        scale = self.scale_sense
        loss = None
        grads = None
        metrics = None
        for index in range(self.accumulation):
            ids = self.micro_batch(input_ids, index)
            micro_labels = None if labels is None else self.micro_batch(labels, index)
            if self.forward_once:
                micro_loss, micro_grads, micro_metrics = self.pynative_loss_and_grads(ids, micro_labels, scale)
            else:
                micro_loss, micro_grads, micro_metrics = self.loss_and_grads(ids, micro_labels, scale)
            if self.returns_step_metrics:
                metrics = micro_metrics if metrics is None else metrics + micro_metrics
            if grads is None:
                loss, grads = micro_loss, micro_grads
            else:
                loss = loss + micro_loss
                grads = tuple(a + b for a, b in zip(grads, micro_grads))
        divisor = scale * self.accumulation
        loss = loss / self.accumulation
        grads, loss = self.data_parallel(grads, loss)
        # Unscaling and clipping are both one scalar factor: the norm of the unscaled gradients is the norm of the
        # summed ones over `divisor`, and the gradients are multiplied once (one pass over every gradient, not two).
        grad_norm = self.grad_norm(grads) / divisor
        loss, overflow = self.clip_and_update(grads, loss, grad_norm, divisor)
        if self.returns_step_metrics:
            return loss, overflow, self.scale_sense, grad_norm, metrics
        return loss, overflow, self.scale_sense, grad_norm
