"""Differentially private training (DP-SGD) through Opacus: clip each example's gradient, add noise.

The loop stays ours: `DPTraining` is a training strategy (`lmforge.train.strategy.Strategy`) that
supplies only the pieces DP-SGD changes. `build_dp` turns the config, the training-set size and the
planned steps into one; it draws Poisson batches, hooks the model (per-example gradient norms),
replaces the backward pass (clipped gradients), wraps the optimizer (Gaussian noise) and owns the
accountant that turns (noise multiplier, sample rate, steps) into the epsilon spent so far.

Clipping is Opacus' ghost clipping (Li et al. 2021; Bu et al. 2023): a first backward pass yields
each example's gradient *norm* from the layer inputs and output gradients, without materialising
per-example gradients; a second pass backpropagates the losses reweighted by min(1, C / norm), whose
gradient is exactly the sum of clipped per-example gradients. Memory stays near a non-private
run's; materialised per-example gradients would cost batch x parameters (5 GB for 1024 examples
of a 21k-token embedding table at width 64) and made large DP batches, which DP needs, impossible.

The clipping bound adapts by default (`privacy.dp.clip_quantile`, Andrew et al. 2021, "Differentially
private learning with adaptive clipping"): after each step it moves geometrically toward the given
quantile of the per-example gradient norms, estimated from a noised count of the examples it did not
clip. Why: no fixed bound suits every model. A bound far below the norms clips every example to the
same length, so an example the model already fits pushes as hard as one it gets wrong, forever; the
sum then follows the class counts and, over the anisotropic features of a pretrained encoder
(multilingual-e5's sentence vectors of unrelated texts have cosine ~0.87), a classifier head drifts
to the majority class (measured: README, DP). A bound far above them lets noise of std sigma*C swamp
the signal. Near the median, well-fit examples keep their small gradients and only the outliers are
cut. The count is one more Gaussian query per step; Theorem 1 of the paper folds both into one
Gaussian mechanism with the accountant's noise multiplier sigma, so the gradient noise is raised to
(sigma^-2 - (2 sigma_b)^-2)^-1/2 and the epsilon is what a fixed-bound run at sigma would spend.

Privacy accounting assumes Poisson sampling (`train.batching.poisson_epoch`) and one optimizer
step per planned batch: an empty batch still takes a step that releases noise only, and is
counted, because skipping it would make the step count depend on the data drawn.

Under torchrun (DDP) the mechanism stays the one-process one, so the accountant's epsilon is too.
Every process draws the same global Poisson batch (a pure function of seed and epoch, each example
in with the global rate q = batch_size / N) and clips the per-example gradients of its share; the
clipped sums are added over processes *after* the noise, which only the first process adds
(Opacus' distributed optimizer): one Gaussian of std sigma*C per global batch, as on one process.
The alternative, sigma*C/sqrt(world) from each process, is exact only for independent draws, and
every process here seeds its RNG alike (the model's initial weights must agree), so the draws
would coincide and add up to sqrt(world) times too much noise. With rank 0's draw, a two-process
run adds the very noise a one-process run with the same seed adds.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from lmforge.config import Config, DPConfig
from lmforge.errors import LmforgeError
from lmforge.log import logger
from lmforge.runtime.collate import Batch
from lmforge.tasks.contracts import PerExampleLosses, Trainable
from lmforge.train.batching import poisson_epoch

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
    processes: int = 1  # DDP processes sharing each global batch
    clip_quantile: float = 0.0  # > 0: the bound adapts toward this quantile of the per-example norms
    clip_rate: float = 0.2  # geometric step of the adaptive bound (the paper's eta_C)
    clip_start: float = field(default=0.0, init=False)  # the bound at step 0 (max_grad_norm)
    unclipped: float = field(default=0.0, init=False)  # sum of (b_i - 1/2) so far in this step (_adapt_bound)
    accountant: Any = field(default=None, repr=False)
    module: Any = field(default=None, repr=False)  # Opacus' hooks, once `wrap` set them
    optimizer: Any = field(default=None, repr=False)  # the noising optimizer `wrap` returned

    def __post_init__(self) -> None:
        from opacus.accountants import create_accountant

        self.accountant = create_accountant(mechanism=self.mechanism)
        self.clip_start = self.max_grad_norm

    @property
    def count_std(self) -> float:
        """Std of the noise on the count of unclipped examples: the paper's B/20, raised to sigma
        when sigma is larger (Theorem 1 needs sigma < 2 * count_std; the gradient noise then grows
        by at most 15%)."""
        return max(self.batch_size / 20, self.noise_multiplier)

    def gradient_noise(self) -> float:
        """The noise multiplier the optimizer adds to the gradients: sigma itself for a fixed bound;
        with the adaptive bound, what remains of sigma once the count's noise is accounted for."""
        if not self.clip_quantile or not self.noise_multiplier:
            return self.noise_multiplier
        return (self.noise_multiplier ** -2 - (2 * self.count_std) ** -2) ** -0.5

    def prepare(self, model: torch.nn.Module) -> None:
        pass  # parameters to freeze (train.freeze_embeddings) are frozen by the loop for every strategy

    def wrap(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Any:
        """Hook `model`'s own layers for per-example gradient norms (so calling `model` itself
        records them) and return `optimizer` wrapped to add noise; train with `backward`."""
        from opacus.grad_sample import GradSampleModuleFastGradientClipping
        from opacus.optimizers import DistributedDPOptimizerFastGradientClipping, DPOptimizerFastGradientClipping

        check_supported(model)
        _per_example_position_ids(model)
        # The loss is a sum over examples, so per-example gradients need no rescaling ("sum");
        # the optimizer then divides clipped-sum + noise by the *expected* batch size ("mean"),
        # which under Poisson sampling must not depend on the batch actually drawn.
        self.module = GradSampleModuleFastGradientClipping(model, loss_reduction="sum",
                                                           max_grad_norm=self.max_grad_norm, use_ghost_clipping=True)
        if self.processes > 1:
            # Each process's share of the expected batch: the distributed optimizer divides by it,
            # sums over processes and divides by their number, i.e. divides the sum by batch_size.
            _without_gradient_sync(model)
            self.optimizer = DistributedDPOptimizerFastGradientClipping(
                optimizer, noise_multiplier=self.gradient_noise(), max_grad_norm=self.max_grad_norm,
                expected_batch_size=self.batch_size / self.processes, loss_reduction="mean")
        else:
            self.optimizer = DPOptimizerFastGradientClipping(optimizer, noise_multiplier=self.gradient_noise(),
                                                             max_grad_norm=self.max_grad_norm,
                                                             expected_batch_size=self.batch_size, loss_reduction="mean")
        self.optimizer.attach_step_hook(lambda _: self.step())  # runs once per real (noised) step
        return self.optimizer

    def plan(self, lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
        """Poisson batches: the privacy analysis assumes each example joins each step independently."""
        return poisson_epoch(len(lengths), batch_size, seed, epoch)

    def loss_scale(self, count: float, processes: int) -> float:
        return 1.0  # the loss stays a sum: clipping is per example, the optimizer divides by the expected batch

    def loss(self, task: Trainable, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        assert isinstance(task, PerExampleLosses), "build_dp refuses tasks without per-example losses"
        return task.losses(model, batch)

    def backward(self, losses: torch.Tensor) -> None:
        """Add the clipped gradients of one micro-batch to the parameters' `.grad`.

        `losses` holds each example's summed loss, shape (n,). Gradients already accumulated from
        earlier micro-batches of the same step are set aside during the first (norm-only) pass,
        so a Poisson batch may be split into micro-batches (train.grad_accum) without mixing an
        unclipped gradient in.
        """
        params = self.optimizer.params
        kept = [p.grad for p in params]
        for p in params:
            p.grad = None
        with warnings.catch_warnings():  # torch notes that hooked layers' inputs (e.g. ids) need no grad
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            losses.sum().backward(retain_graph=True)  # the hooks record per-example gradient norms
            scale = self.module.get_clipping_coef().to(losses.device, losses.dtype)  # min(1, C / norm_i)
            self.unclipped += float((self.module.per_sample_gradient_norms <= self.max_grad_norm).sum()) - len(losses) / 2
            for p, grad in zip(params, kept):
                p.grad = grad
            self.module.disable_hooks()
            try:
                (losses * scale).sum().backward()
            finally:
                self.module.enable_hooks()
        for p in params:  # a parameter this batch did not reach still gets its (zero) share of noise
            if p.grad is None:
                p.grad = torch.zeros_like(p)

    def step(self) -> None:
        """Record one noised optimizer step with the accountant; move an adaptive bound for the next."""
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        if self.clip_quantile:
            self._adapt_bound()
        self.unclipped = 0.0

    def _adapt_bound(self) -> None:
        """C <- C * exp(-eta * (unclipped share - quantile)), the share from a noised count.

        The count is of (b_i - 1/2) for b_i = 1 if example i was not clipped, so one example more or
        less moves it by 1/2 (the sensitivity Theorem 1 assumes), and is divided by the *expected*
        batch size, as the gradients are. Under DDP the processes' counts are summed and only the
        first adds noise, as for the gradients, so every process computes the same bound."""
        import torch.distributed as dist

        first = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
        noise = float(torch.normal(0.0, self.count_std, ())) if first else 0.0
        count = torch.tensor(self.unclipped + noise, dtype=torch.float64)
        if self.processes > 1:
            dist.all_reduce(count)
        share = float(count) / self.batch_size + 0.5
        self.max_grad_norm *= math.exp(-self.clip_rate * (share - self.clip_quantile))
        self.module.max_grad_norm = self.optimizer.max_grad_norm = self.max_grad_norm

    def epsilon(self) -> float:
        """Epsilon spent so far at this run's delta (0 before the first step)."""
        return float(self.accountant.get_epsilon(delta=self.delta)) if self.accountant.history else 0.0

    def card(self) -> dict[str, Any]:
        """What a released model's card states about its privacy: the guarantee and how it was made."""
        return {"epsilon": self.epsilon(), "delta": self.delta, "noise_multiplier": self.noise_multiplier,
                "max_grad_norm": self.max_grad_norm, "clip_quantile": self.clip_quantile,
                "clip_start": self.clip_start, "sample_rate": self.sample_rate, "batch_size": self.batch_size,
                "steps": sum(steps for _, _, steps in self.accountant.history), "accountant": self.mechanism}

    def before_step(self, model: torch.nn.Module, empty: bool) -> None:
        """Clipping happened per example in `backward`. An empty Poisson batch still steps, with a zero
        gradient, so the update is pure noise: exactly what the privacy analysis assumes for it."""
        if empty:
            for p in self.optimizer.params:
                p.grad = torch.zeros_like(p)

    def eval_record(self) -> dict[str, float]:
        record = {"dp_epsilon": self.epsilon(), "dp_delta": self.delta}
        return {**record, "dp_clip_bound": self.max_grad_norm} if self.clip_quantile else record

    def state_dict(self) -> dict[str, Any]:
        return {"mechanism": self.mechanism, "history": [list(h) for h in self.accountant.history],
                "max_grad_norm": self.max_grad_norm}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            raise LmforgeError("--resume: the checkpoint was written without DP-SGD, so its privacy spend "
                               "is unknown; start a fresh run")
        if state.get("mechanism") != self.mechanism:
            raise LmforgeError(f"--resume: the checkpoint's privacy accountant is {state.get('mechanism')!r}, "
                               f"this run uses {self.mechanism!r} (privacy.dp.accountant)")
        self.accountant.history = [tuple(h) for h in state["history"]]
        if self.clip_quantile and "max_grad_norm" in state:  # an adaptive bound goes on from where it was
            self.max_grad_norm = state["max_grad_norm"]
        if self.module is not None:
            self.module.max_grad_norm = self.optimizer.max_grad_norm = self.max_grad_norm


def build_dp(cfg: Config, task: Trainable, n_train: int, steps: int, processes: int,
             engine: str = "NO") -> DPTraining | None:
    """The run's DP-SGD settings, or None when privacy.dp is off; checks the run can be made private.
    `processes` share each global batch; `engine` is accelerate's distributed type (FSDP, ...)."""
    dp = cfg.privacy.dp
    if not dp_enabled(dp):
        return None
    if not isinstance(task, PerExampleLosses):
        raise LmforgeError(f"DP-SGD is not available for task {task.name}: it needs each example's loss")
    _check_settings(cfg, n_train, engine)
    delta = dp.delta or 1.0 / (10 * n_train)
    q = min(cfg.train.batch_size / n_train, 1.0)  # the global rate, whatever the number of processes
    sigma = dp.noise_multiplier or noise_for_target(dp, delta, q, steps)
    run = DPTraining(sigma, q, dp.max_grad_norm, delta, cfg.train.batch_size, dp.accountant, processes,
                     clip_quantile=dp.clip_quantile)
    clip = (f"clip bound adaptive from {dp.max_grad_norm:g} toward the {dp.clip_quantile:g} quantile of the "
            "per-example norms" if dp.clip_quantile else f"clip {dp.max_grad_norm:g}")
    logger.info(f"DP-SGD: noise multiplier {sigma:.4f}, sample rate {q:.4g}, {clip}, "
                f"delta {delta:.3g}, {dp.accountant} accountant over {steps} planned steps, {processes} process(es)")
    return run


def noise_for_target(dp: DPConfig, delta: float, q: float, steps: int) -> float:
    """The noise multiplier that spends dp.target_epsilon at `delta` over `steps` steps at sample rate q."""
    from opacus.accountants.utils import get_noise_multiplier

    try:
        return float(get_noise_multiplier(target_epsilon=dp.target_epsilon, target_delta=delta, sample_rate=q,
                                          steps=steps, accountant=dp.accountant))
    except ValueError as exc:  # raised when no finite noise reaches the target
        raise LmforgeError(f"privacy.dp.target_epsilon={dp.target_epsilon} is out of reach over {steps} steps "
                           f"at sample rate {q:.4g}: {exc}") from None


def _check_settings(cfg: Config, n_train: int, engine: str) -> None:
    dp = cfg.privacy.dp
    if dp.target_epsilon > 0 and dp.noise_multiplier > 0:
        raise LmforgeError("privacy.dp: give target_epsilon or noise_multiplier, not both")
    if dp.target_epsilon < 0 or dp.noise_multiplier < 0 or dp.max_grad_norm <= 0:
        raise LmforgeError("privacy.dp: target_epsilon and noise_multiplier must be >= 0, max_grad_norm > 0")
    if not 0 <= dp.clip_quantile < 1:
        raise LmforgeError(f"privacy.dp.clip_quantile={dp.clip_quantile} must be in [0, 1): the share of examples "
                           "the adaptive bound leaves unclipped (0: a fixed bound)")
    if dp.accountant not in ACCOUNTANTS:
        raise LmforgeError(f"privacy.dp.accountant='{dp.accountant}' (choose from {', '.join(ACCOUNTANTS)})")
    if not 0 <= dp.delta < 1.0 / n_train:
        raise LmforgeError(f"privacy.dp.delta={dp.delta} must be below 1/N = {1.0 / n_train:.3g}: a larger delta "
                           "allows releasing some training examples outright")
    if cfg.train.gradient_checkpointing:
        raise LmforgeError("DP-SGD cannot run with train.gradient_checkpointing: the recomputed forward pass would "
                           "record every example's layer inputs twice for per-example clipping")
    if engine in ("FSDP", "DEEPSPEED"):
        raise LmforgeError(f"DP-SGD runs under data parallelism (torchrun, configs/accelerate/ddp.yaml), not {engine}: "
                           "per-example clipping needs each process to hold the whole model")


def _without_gradient_sync(model: torch.nn.Module) -> None:
    """Switch DDP's gradient averaging in backward off for good (what its `no_sync()` does for one
    step): the distributed DP optimizer sums the clipped gradients over processes itself, after the
    noise. DDP would average the gradients of ghost clipping's first, norm-only backward pass, which
    are thrown away: an all-reduce of every gradient per step for nothing."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model.require_backward_grad_sync = False


def _per_example_position_ids(model: torch.nn.Module) -> None:
    """Give every embedding lookup a batch dimension of its own, in contiguous memory.

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
            ids = ids.expand(batch["size"], *ids.shape[1:])
        if ids is args[0] and ids.is_contiguous():
            return None
        # Opacus' embedding norms flatten the ids with .view: BERT's token-type ids are a broadcast view.
        return (ids.contiguous(), *args[1:])

    # On the model inside DDP's wrapper: evaluation calls it directly (lmforge.train.parallel.evaluation_model).
    inner = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    inner.register_forward_pre_hook(remember, with_kwargs=True)
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
    errors += [f"{' and '.join(names)}: one trainable weight used by several layers (tied), whose per-example "
               "gradient norms ghost clipping cannot combine (train.freeze_embeddings=true freezes tied "
               "token embeddings)" for names in _tied(model)]
    if errors:
        listed = "\n  ".join(str(e) for e in errors)
        raise LmforgeError(f"DP-SGD cannot train this model: per-example gradients are unsupported for\n  {listed}\n"
                           "freeze these parameters (method=lora, leaving these modules out of lora.target_modules) "
                           "or replace the modules")


def _tied(model: torch.nn.Module) -> list[list[str]]:
    """Names of the layers sharing each trainable parameter that more than one layer holds."""
    holders: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        for key, p in module.named_parameters(recurse=False):
            if p.requires_grad:
                holders.setdefault(id(p), []).append(f"{name}.{key}")
    return [names for names in holders.values() if len(names) > 1]


def _unhooked(model: torch.nn.Module) -> list[str]:
    """Trainable parameters of ParameterDict/ParameterList containers. Opacus records per-example
    gradients in hooks on the module whose forward uses a parameter; these containers are never
    called (peft's LoRA embedding reads `lora_embedding_A[name]` directly), so their gradients
    would reach the optimizer unclipped, or crash it."""
    containers = (torch.nn.ParameterDict, torch.nn.ParameterList)
    return [f"{name}.{key}" for name, module in model.named_modules() if isinstance(module, containers)
            for key, p in module.named_parameters(recurse=False) if p.requires_grad]
