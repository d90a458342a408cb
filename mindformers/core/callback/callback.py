"""The callback protocol of the training loop, and the state it hands to callbacks."""
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainState:
    """What the loop knows after a step. Steps count from 1; epochs count from 1."""

    train_cell: Any
    model_config: Any
    output_dir: str
    rank_id: int = 0
    world_size: int = 1
    steps_per_epoch: int = 1
    total_steps: int = 1
    epochs: int = 1
    global_batch_size: int = 1
    seq_length: int = 1
    global_step: int = 0
    epoch: int = 1
    step_in_epoch: int = 0
    loss: float = 0.0
    lr: float = 0.0
    grad_norm: float = 0.0
    loss_scale: float = 1.0
    overflow: bool = False
    step_time: float = 0.0
    compile_time: float = 0.0  # graph compilation before the run's first step (not in its step_time)
    initial_step: int = 0
    step_metrics: dict = field(default_factory=dict)  # what the model reports per step (MoE: aux_loss, expert_load)
    nonfinite_steps: int = 0  # consecutive steps, up to this one, whose loss or gradient norm was not finite
    extra: dict = field(default_factory=dict)


class Callback:
    """Hooks called by the trainer; subclasses override the ones they need."""

    def on_train_begin(self, state: TrainState):
        pass

    def on_step_end(self, state: TrainState):
        pass

    def on_train_end(self, state: TrainState):
        pass
