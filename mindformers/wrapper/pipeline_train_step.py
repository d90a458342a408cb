"""One optimizer step of a pipeline stage on CPU: the 1F1B schedule over the step's micro-batches, then the same
gradient handling as MFTrainOneStepCell (loss scale, data-parallel averaging, clipping on the global norm).

The step equals the single-process step on the same rows: each micro-batch's loss is weighted by its share of the
step's targets (so the micro-batches' losses add up to the mean over all the step's targets, and so do their
gradients), the gradients are accumulated over the micro-batches, the squared gradient norms of the stages are
summed (a tied embedding counted once), and the loss, which only the last stage computes, is summed over the
pipeline so every rank logs the same number.

The step is written as a generator (`step_program`) that yields (group key, tensor) whenever it needs an all-reduce
over a pipeline group (mindformers/parallel/pipeline_groups.py) and gets the sum back: a run drives it with the real
collectives (`__call__`), a test can drive every stage's program in one process.
"""
import numpy as np
import mindspore as ms
from mindspore import Tensor, ops

from mindformers.models.modules.layout import parameter_splits
from mindformers.parallel.layout_file import TIED_EMBEDDING
from mindformers.parallel.mesh import rank_coordinates
from mindformers.parallel.parallelize import parallel_groups_of
from mindformers.parallel.pipeline_groups import PIPELINE, TIED, CollectiveTransport, boundary, create_pipeline_groups
from mindformers.parallel.pipeline_schedule import BACKWARD, FORWARD, stage_program
from mindformers.parallel.pipeline_stage import (StageBackward, StageForward, TargetCount, activation_shape,
                                                 holds_tied_embedding)
from mindformers.wrapper.grad_norm import GlobalGradNorm
from mindformers.wrapper.train_one_step import MFTrainOneStepCell


class PipelineTrainOneStepCell(MFTrainOneStepCell):
    """Called like MFTrainOneStepCell: (input_ids[, labels]) -> (loss, overflow, loss_scale, grad_norm), where the
    rows are this data-parallel rank's for the whole step (micro_batches micro-batches along dim 0). `network` is
    already cut to `stage` (mindformers/parallel/pipeline_stage.py); `transport` all-reduces over pipeline groups."""

    def __init__(self, network, optimizer, stages, stage, micro_batches, transport, scale_sense=None,
                 use_clip_grad=True, max_grad_norm=1.0):
        super().__init__(network, optimizer, scale_sense=scale_sense, use_clip_grad=use_clip_grad,
                         max_grad_norm=max_grad_norm)
        self.stages, self.stage, self.micro_batches = stages, stage, micro_batches
        self.first, self.last = stage == 0, stage == stages - 1
        self.transport = transport
        self.program = stage_program(stages, micro_batches, stage)
        self.forward = StageForward(network, stages, stage)
        self.backward = StageBackward(self.forward, self.weights)
        self.target_count = TargetCount(network)
        names = [param.name for param in self.weights]
        tied = holds_tied_embedding(network, stages, stage) and TIED_EMBEDDING in names
        self.tied_index = names.index(TIED_EMBEDDING) if tied else None
        # The norm counts a tied embedding once: on the first stage.
        self.counted = [i for i in range(len(names)) if not (i == self.tied_index and not self.first)]
        splits = parameter_splits(network)
        self.grad_norm = GlobalGradNorm([splits.get(names[i]) for i in self.counted], parallel_groups_of(network),
                                        [self.weights[i].dtype for i in self.counted])
        self.placeholder = Tensor(np.zeros((1,), np.float32))

    def compile(self, *args, **kwargs):
        """The stage's cells compile on their first call (inside the first step)."""
        del args, kwargs

    def __call__(self, input_ids, labels=None):
        program = self.step_program(input_ids, labels)
        reply = None
        try:
            while True:
                key, tensor = program.send(reply)
                reply = self.transport.all_reduce(key, tensor)
        except StopIteration as done:
            return done.value

    def micro_batch_inputs(self, input_ids, labels):
        """Per micro-batch (input_ids, labels, loss weight); labels are the input_ids when the data has none."""
        ids = input_ids.asnumpy()
        targets = ids if labels is None else labels.asnumpy()
        size = ids.shape[0] // self.micro_batches
        parts = [(Tensor(ids[i * size:(i + 1) * size]), Tensor(targets[i * size:(i + 1) * size]))
                 for i in range(self.micro_batches)]
        if not self.last:
            return [(ids_part, labels_part, self.placeholder) for ids_part, labels_part in parts]
        counts = [float(self.target_count(*part).asnumpy()) for part in parts]
        total = max(sum(counts), 1.0)
        return [(ids_part, labels_part, Tensor(np.float32(count / total)))
                for (ids_part, labels_part), count in zip(parts, counts)]

    def step_program(self, input_ids, labels=None):
        """A generator running one step of this stage; yields (group key, tensor) for each all-reduce it needs and
        expects the sum back. Returns (loss, overflow, loss_scale, grad_norm)."""
        scale = Tensor(self.scale_sense.asnumpy())  # the scale this step's gradients carry
        micro = self.micro_batch_inputs(input_ids, labels)
        shape, dtype = activation_shape(self.network, input_ids.shape[0] // self.micro_batches)
        zeros = ops.zeros(shape, dtype)
        inputs, outputs, output_grads, input_grads = {}, {}, {}, {}
        accumulated = tuple(ops.zeros_like(param) for param in self.weights)
        loss = ops.zeros((), ms.float32)
        for step in self.program:
            if step.kind == FORWARD:
                hidden = self.placeholder if self.first else inputs[step.micro_batch]
                out = self.forward(hidden, *micro[step.micro_batch])
                if self.last:
                    loss = loss + out
                else:
                    outputs[step.micro_batch] = out
            elif step.kind == BACKWARD:
                index = step.micro_batch
                hidden = self.placeholder if self.first else inputs.pop(index)
                sens = ops.cast(scale, ms.float32) if self.last else output_grads.pop(index)
                input_grad, accumulated = self.backward(hidden, *micro[index], sens, ms.mutable(accumulated))
                if not self.first:
                    input_grads[index] = input_grad
            else:
                sent = [(outputs.pop(m) if step.sends_activation else zeros) if kind == "activation" else
                        (input_grads.pop(m) if step.sends_gradient else zeros) for kind, m in step.slots]
                payload = sent[0] if len(sent) == 1 else ops.stack(sent)
                summed = yield boundary(step.boundary), payload
                received = [summed] if len(sent) == 1 else list(ops.unstack(summed))
                for (kind, m), value in zip(step.slots, received):
                    if kind == "activation" and not step.sends_activation:
                        inputs[m] = value
                    elif kind == "gradient" and not step.sends_gradient:
                        output_grads[m] = value
        if self.tied_index is not None:
            tied = yield TIED, accumulated[self.tied_index]
            accumulated = accumulated[:self.tied_index] + (tied,) + accumulated[self.tied_index + 1:]
        grads, loss = self.data_parallel(ms.mutable(accumulated), loss)
        square = ops.square(self.grad_norm(ms.mutable(tuple(grads[i] for i in self.counted))))
        summed = yield PIPELINE, ops.stack([ops.cast(square, ms.float32), ops.cast(loss, ms.float32)])
        grad_norm = ops.sqrt(summed[0]) / scale
        loss, overflow = self.clip_and_update(grads, summed[1], grad_norm, scale)
        return loss, overflow, self.scale_sense, grad_norm


WRAPPER_ARGUMENTS = ("scale_sense", "use_clip_grad", "max_grad_norm")


def build_pipeline_wrapper(wrapper_args, network, optimizer, settings, rank_id, micro_batches):
    """The train step of this rank's stage: runner_wrapper's loss scale and clipping, the pipeline groups made."""
    stage = rank_coordinates(rank_id, settings.mesh())[0]
    tied = bool(network.config.tie_word_embeddings)
    transport = CollectiveTransport(create_pipeline_groups(rank_id, settings, tied))
    args = {key: value for key, value in wrapper_args.items() if key in WRAPPER_ARGUMENTS}
    return PipelineTrainOneStepCell(network, optimizer, settings.pipeline_stage, stage, micro_batches, transport,
                                    **args)
