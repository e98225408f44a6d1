"""Differentially private training (DP-SGD) through Opacus: clip each example's gradient, add noise.

The loop stays ours: this module only supplies the pieces DP-SGD changes. `build_dp` turns the
config, the training-set size and the planned steps into a `DPTraining`, which wraps the model
(per-example gradients) and the optimizer (clipping + Gaussian noise) and owns the accountant that
turns (noise multiplier, sample rate, steps) into the epsilon spent so far.

Privacy accounting assumes Poisson sampling (`train.batching.poisson_epoch`) and one optimizer
step per planned batch: an empty batch still takes a step that releases noise only, and is
counted, because skipping it would make the step count depend on the data drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from lmforge.config import Config, DPConfig
from lmforge.errors import LmforgeError
from lmforge.log import logger

ACCOUNTANTS = ("rdp", "prv")


def dp_enabled(cfg: DPConfig) -> bool:
    """DP-SGD is on when either a target epsilon or a noise multiplier is given."""
    return cfg.target_epsilon > 0 or cfg.noise_multiplier > 0


@dataclass
class DPTraining:
    """One run's DP-SGD settings and its privacy accountant."""

    noise_multiplier: float
    sample_rate: float  # q = batch_size / N: each example's chance of joining a step
    max_grad_norm: float
    delta: float
    batch_size: int
    mechanism: str = "rdp"
    accountant: Any = field(default=None, repr=False)
    module: Any = field(default=None, repr=False)  # the GradSampleModule, once `wrap` made it

    def __post_init__(self) -> None:
        from opacus.accountants import create_accountant

        self.accountant = create_accountant(mechanism=self.mechanism)

    def wrap(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Any:
        """Give `model` per-example gradients (hooks on its own layers, so calling `model` itself
        records them) and return `optimizer` wrapped in Opacus' DPOptimizer."""
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer

        check_supported(model)
        _per_example_position_ids(model)
        # The loss is a sum over examples, so per-example gradients need no rescaling ("sum");
        # the optimizer then divides clipped-sum + noise by the *expected* batch size ("mean"),
        # which under Poisson sampling must not depend on the batch actually drawn.
        self.module = GradSampleModule(model, loss_reduction="sum")
        dp_optimizer = DPOptimizer(optimizer, noise_multiplier=self.noise_multiplier,
                                   max_grad_norm=self.max_grad_norm, expected_batch_size=self.batch_size,
                                   loss_reduction="mean")
        dp_optimizer.attach_step_hook(lambda _: self.step())  # runs once per real (noised) step
        return dp_optimizer

    def step(self) -> None:
        """Record one noised optimizer step with the accountant."""
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)

    def epsilon(self) -> float:
        """Epsilon spent so far at this run's delta (0 before the first step)."""
        return float(self.accountant.get_epsilon(delta=self.delta)) if self.accountant.history else 0.0

    def card(self) -> dict[str, Any]:
        """What a released model's card states about its privacy: the guarantee and how it was made."""
        return {"epsilon": self.epsilon(), "delta": self.delta, "noise_multiplier": self.noise_multiplier,
                "max_grad_norm": self.max_grad_norm, "sample_rate": self.sample_rate, "batch_size": self.batch_size,
                "steps": sum(steps for _, _, steps in self.accountant.history), "accountant": self.mechanism}

    def prepare_empty_step(self, optimizer: Any) -> None:
        """Let the optimizer step on an empty Poisson batch: zero examples' gradients, so the
        update is pure noise, exactly what the privacy analysis assumes for an empty draw."""
        for p in optimizer.params:
            p.grad_sample = p.new_zeros((0, *p.shape))

    def state_dict(self) -> dict[str, Any]:
        return {"mechanism": self.mechanism, "history": [list(h) for h in self.accountant.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("mechanism") != self.mechanism:
            raise LmforgeError(f"--resume: the checkpoint's privacy accountant is {state.get('mechanism')!r}, "
                               f"this run uses {self.mechanism!r} (privacy.dp.accountant)")
        self.accountant.history = [tuple(h) for h in state["history"]]


def build_dp(cfg: Config, n_train: int, steps: int, num_processes: int) -> DPTraining | None:
    """The run's DP-SGD settings, or None when privacy.dp is off; checks the run can be made private."""
    dp = cfg.privacy.dp
    if not dp_enabled(dp):
        return None
    _check_settings(cfg, n_train, num_processes)
    delta = dp.delta or 1.0 / (10 * n_train)
    q = min(cfg.train.batch_size / n_train, 1.0)
    sigma = dp.noise_multiplier or _noise_for_target(dp, delta, q, steps)
    run = DPTraining(sigma, q, dp.max_grad_norm, delta, cfg.train.batch_size, dp.accountant)
    logger.info(f"DP-SGD: noise multiplier {sigma:.4f}, sample rate {q:.4g}, clip {dp.max_grad_norm}, "
                f"delta {delta:.3g}, {dp.accountant} accountant over {steps} planned steps")
    return run


def _noise_for_target(dp: DPConfig, delta: float, q: float, steps: int) -> float:
    from opacus.accountants.utils import get_noise_multiplier

    try:
        return float(get_noise_multiplier(target_epsilon=dp.target_epsilon, target_delta=delta, sample_rate=q,
                                          steps=steps, accountant=dp.accountant))
    except ValueError as exc:  # raised when no finite noise reaches the target
        raise LmforgeError(f"privacy.dp.target_epsilon={dp.target_epsilon} is out of reach over {steps} steps "
                           f"at sample rate {q:.4g}: {exc}") from None


def _check_settings(cfg: Config, n_train: int, num_processes: int) -> None:
    dp = cfg.privacy.dp
    if dp.target_epsilon > 0 and dp.noise_multiplier > 0:
        raise LmforgeError("privacy.dp: give target_epsilon or noise_multiplier, not both")
    if dp.target_epsilon < 0 or dp.noise_multiplier < 0 or dp.max_grad_norm <= 0:
        raise LmforgeError("privacy.dp: target_epsilon and noise_multiplier must be >= 0, max_grad_norm > 0")
    if dp.accountant not in ACCOUNTANTS:
        raise LmforgeError(f"privacy.dp.accountant='{dp.accountant}' (choose from {', '.join(ACCOUNTANTS)})")
    if not 0 <= dp.delta < 1.0 / n_train:
        raise LmforgeError(f"privacy.dp.delta={dp.delta} must be below 1/N = {1.0 / n_train:.3g}: a larger delta "
                           "allows releasing some training examples outright")
    if num_processes > 1:
        raise LmforgeError("DP-SGD runs on one process only for now: each process would clip and noise its own "
                           "share and the accountant would miscount; run without torchrun/accelerate launch")
    if cfg.train.grad_accum > 1:
        raise LmforgeError("DP-SGD does not support train.grad_accum > 1 yet (Poisson batches are not split); "
                           "lower train.batch_size or set train.grad_accum=1")


def _per_example_position_ids(model: torch.nn.Module) -> None:
    """Give every embedding lookup a batch dimension of its own.

    Models such as BERT look positions up once, with ids of shape (1, L), and broadcast the result
    over the batch; Opacus then sees one "example" and cannot clip the position embeddings per
    example. Expanding the ids to (B, L) changes no value, only makes the gradient per example.
    """
    batch = {"size": 0}

    def remember(_module: Any, args: tuple, kwargs: dict) -> None:
        first = next((t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)), None)
        batch["size"] = first.shape[0] if first is not None and first.dim() > 0 else 0

    def expand(_module: Any, args: tuple) -> tuple | None:
        ids = args[0]
        if batch["size"] > 1 and ids.dim() > 1 and ids.shape[0] == 1:
            return (ids.expand(batch["size"], *ids.shape[1:]), *args[1:])
        return None

    model.register_forward_pre_hook(remember, with_kwargs=True)
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding) and any(p.requires_grad for p in module.parameters()):
            module.register_forward_pre_hook(expand)


def check_supported(model: torch.nn.Module) -> None:
    """Fail naming every trainable module Opacus cannot compute per-example gradients for
    (e.g. BatchNorm, whose running statistics mix examples and are not private).

    Frozen modules need no per-example gradients, so a LoRA model passes whatever its base holds.
    """
    from opacus import GradSampleModule
    from opacus.validators import ModuleValidator

    was_training = model.training
    model.train()  # the validator insists on training mode; we only want the module checks
    errors = ModuleValidator.validate(model, strict=False) + GradSampleModule.validate(model, strict=False)
    model.train(was_training)
    errors += [f"{name}: a trainable parameter held in a container, used outside any layer's forward "
               "(e.g. LoRA on an embedding), so no per-example gradient is recorded" for name in _unhooked(model)]
    if errors:
        listed = "\n  ".join(str(e) for e in errors)
        raise LmforgeError(f"DP-SGD cannot train this model: per-example gradients are unsupported for\n  {listed}\n"
                           "freeze these parameters (method=lora, leaving these modules out of lora.target_modules) "
                           "or replace the modules")


def _unhooked(model: torch.nn.Module) -> list[str]:
    """Trainable parameters of ParameterDict/ParameterList containers. Opacus records per-example
    gradients in hooks on the module whose forward uses a parameter; these containers are never
    called (peft's LoRA embedding reads `lora_embedding_A[name]` directly), so their gradients
    would reach the optimizer unclipped, or crash it."""
    containers = (torch.nn.ParameterDict, torch.nn.ParameterList)
    return [f"{name}.{key}" for name, module in model.named_modules() if isinstance(module, containers)
            for key, p in module.named_parameters(recurse=False) if p.requires_grad]
