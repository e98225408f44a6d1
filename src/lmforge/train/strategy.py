"""How gradients are made from a batch: the one place training behaviours plug into the loop.

The loop (`train.loop`) owns the batches, the optimizer step, evaluation and checkpoints; a
`Strategy` owns what differs between plain training and DP-SGD (and the next behaviour): how an
epoch's batches are drawn, which loss is taken and how it is backpropagated, what happens to the
gradients before the step, and what state a checkpoint must keep. `Plain` is ordinary training;
`lmforge.privacy.dp.DPTraining` is DP-SGD. `build_strategy` picks one from the config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Sequence

import torch

from lmforge.config import Config
from lmforge.errors import LmforgeError
from lmforge.runtime.collate import Batch
from lmforge.train.batching import plan_epoch
from lmforge.train.cpu_training import use_cpu_training_kernels

if TYPE_CHECKING:
    from accelerate import Accelerator

    from lmforge.tasks.contracts import Trainable


class Strategy(Protocol):
    def prepare(self, model: torch.nn.Module) -> None:
        """Adjust the model before the optimizer is built (frozen parameters get no optimizer state)."""

    def wrap(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """The optimizer the loop steps (DP-SGD adds noise in it), after accelerate prepared both."""

    def plan(self, lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
        """The global batches (example indices) of one epoch, a pure function of (seed, epoch)."""

    def loss_scale(self, count: float, processes: int) -> float:
        """Factor on a micro-batch's summed loss so the step's gradient is what the strategy wants."""

    def loss(self, task: Trainable, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """The loss to backpropagate: the batch's summed loss, or each example's (DP-SGD)."""

    def backward(self, loss: torch.Tensor) -> None:
        """Add this micro-batch's gradients (the loss already weighted and scaled)."""

    def before_step(self, model: torch.nn.Module, empty: bool) -> None:
        """Last touch on the gradients before the optimizer step (clipping); `empty`: no example drawn."""

    def eval_record(self) -> dict[str, float]:
        """Values logged with each evaluation (the privacy spent so far)."""

    def card(self) -> dict[str, Any] | None:
        """What a saved model's card states about how it was trained (its privacy guarantee)."""

    def state_dict(self) -> dict[str, Any]:
        """State a checkpoint keeps so a resumed run continues exactly."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`'s state, refusing a checkpoint written by another strategy."""


class Plain:
    """Ordinary training: length-grouped batches, the global mean loss, gradient-norm clipping, and on a CPU
    the faster dropout and attention kernels of `train.cpu_training` (the same functions)."""

    def __init__(self, cfg: Config, acc: Accelerator):
        self.max_grad_norm, self.acc = cfg.train.max_grad_norm, acc

    def prepare(self, model: torch.nn.Module) -> None:
        use_cpu_training_kernels(model, self.acc.device)

    def wrap(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        return optimizer

    def plan(self, lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
        return plan_epoch(lengths, batch_size, seed, epoch)

    def loss_scale(self, count: float, processes: int) -> float:
        # DDP averages gradients over processes; multiplying by their number undoes that, so the
        # step's gradient is the exact mean over the global batch's loss terms.
        return processes / count

    def loss(self, task: Trainable, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        return task.loss(model, batch)

    def backward(self, loss: torch.Tensor) -> None:
        self.acc.backward(loss)

    def before_step(self, model: torch.nn.Module, empty: bool) -> None:
        if self.max_grad_norm > 0:
            self.acc.clip_grad_norm_(model.parameters(), self.max_grad_norm)

    def eval_record(self) -> dict[str, float]:
        return {}

    def card(self) -> dict[str, Any] | None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise LmforgeError("--resume: the checkpoint was written by a DP-SGD run; resume it with the same "
                               "privacy.dp settings (a run without them would release unaccounted gradients)")


def build_strategy(cfg: Config, task: Trainable, acc: Accelerator, n_train: int, steps: int) -> Strategy:
    """DP-SGD when `privacy.dp` is on, else plain training."""
    from lmforge.privacy.dp import build_dp

    dp = build_dp(cfg, task, n_train, steps, acc.num_processes, acc.distributed_type.value)
    return dp if dp is not None else Plain(cfg, acc)
