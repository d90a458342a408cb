"""The 1F1B pipeline schedule as a program per stage: forwards, backwards and the transfers between them.

Stage s of pp runs min(pp - s - 1, m) warm-up forwards, then alternates one forward and one backward, then runs the
remaining backwards (cool-down), so at most pp - s micro-batches wait for their backward on stage s. Micro-batches
run forward and backward in order on every stage.

A transfer crosses one stage boundary (boundary b joins stage b and b + 1) and may carry an activation downstream
and a gradient upstream at the same time: on CPU a transfer is one all-reduce over the boundary's two ranks in which
each side contributes its outgoing tensor and zeros where it receives, so both sides must issue their transfers on a
boundary in the same order with the same slots. Pairing "send my output" with "receive the gradient I need next"
(and "send my input's gradient" with "receive my next input"), as Megatron-LM does, makes the two sides' sequences
match; `boundary_transfers` lists them so tests can check it.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

FORWARD, BACKWARD, TRANSFER = "forward", "backward", "transfer"


@dataclass(frozen=True)
class Step:
    """One instruction of a stage's program. Compute steps name their micro-batch; a transfer names its boundary,
    the activation it sends or receives downstream (`activation`: micro-batch, `sends_activation`: direction) and
    the gradient it sends or receives upstream."""

    kind: str
    micro_batch: Optional[int] = None
    boundary: Optional[int] = None
    activation: Optional[int] = None
    gradient: Optional[int] = None
    sends_activation: bool = False
    sends_gradient: bool = False

    @property
    def slots(self):
        """What the transfer's payload holds, in order: ('activation', micro) and/or ('gradient', micro)."""
        return tuple(slot for slot in (("activation", self.activation), ("gradient", self.gradient))
                     if slot[1] is not None)


def compute_order(stages, micro_batches, stage):
    """[(FORWARD or BACKWARD, micro-batch)] stage `stage` runs in one step under 1F1B."""
    warmup = min(stages - stage - 1, micro_batches)
    order = [(FORWARD, i) for i in range(warmup)]
    for k in range(micro_batches - warmup):
        order += [(FORWARD, warmup + k), (BACKWARD, k)]
    order += [(BACKWARD, k) for k in range(micro_batches - warmup, micro_batches)]
    return order


def stage_program(stages, micro_batches, stage):
    """The steps of stage `stage`: compute_order with the transfers placed and fused (see the module doc)."""
    first, last = stage == 0, stage == stages - 1
    upstream, downstream = stage - 1, stage

    def receive_input(micro):  # the activation of `micro` from the previous stage
        return [] if first else [Step(TRANSFER, boundary=upstream, activation=micro)]

    def send_output(micro, then_receive_gradient=None):
        if last:
            return []
        return [Step(TRANSFER, boundary=downstream, activation=micro, sends_activation=True,
                     gradient=then_receive_gradient)]

    def send_input_gradient(micro, then_receive_input=None):
        if first:
            return []
        return [Step(TRANSFER, boundary=upstream, gradient=micro, sends_gradient=True, activation=then_receive_input)]

    def receive_gradient(micro):
        return [] if last else [Step(TRANSFER, boundary=downstream, gradient=micro)]

    warmup = min(stages - stage - 1, micro_batches)
    steady = micro_batches - warmup
    program = []
    for micro in range(warmup):
        program += receive_input(micro) + [Step(FORWARD, micro)] + send_output(micro)
    if steady:
        program += receive_input(warmup)
    for k in range(steady):
        micro = warmup + k
        program += [Step(FORWARD, micro)] + send_output(micro, then_receive_gradient=k) + [Step(BACKWARD, k)]
        program += send_input_gradient(k, then_receive_input=micro + 1 if k < steady - 1 else None)
    for k in range(steady, micro_batches):
        program += receive_gradient(k) + [Step(BACKWARD, k)] + send_input_gradient(k)
    return program


def boundary_transfers(program, boundary) -> Tuple[Tuple[Tuple[str, int], ...], ...]:
    """The payload slots of the transfers `program` makes over `boundary`, in order: both sides of a boundary must
    list the same."""
    return tuple(step.slots for step in program if step.kind == TRANSFER and step.boundary == boundary)


def bubble_fraction(stages, micro_batches):
    """The idle share of a 1F1B step when forward and backward times are equal on every stage."""
    return (stages - 1) / (micro_batches + stages - 1)
