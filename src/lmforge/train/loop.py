"""The one training loop. Every task trains through `fit`; tasks differ only behind `Task` methods.

Built on accelerate so the same code runs on one CPU, a GPU, or many processes under torchrun.
Batches are planned here rather than by a DataLoader so that resume and multi-process sharding
are exact: `train.batch_size` is the global batch per optimizer step, whatever the number of
processes and accumulation steps, and the loss is normalised by the global batch's count.
"""

from __future__ import annotations

import json
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from lmforge.config import Config
from lmforge.errors import LmforgeError
from lmforge.log import logger
from lmforge.runtime.collate import Batch, Features
from lmforge.runtime.device import autocast
from lmforge.runtime.forward import merge_shards, run_forward
from lmforge.tasks.contracts import COLLAPSED, CountsFlops, Model, Trainable
from lmforge.train import parallel
from lmforge.train.batching import micro_batches
from lmforge.train.checkpoint import TrainState, load_checkpoint, rng_state, save_checkpoint, save_model_folder
from lmforge.train.optim import build_optimizer, build_scheduler
from lmforge.train.strategy import build_strategy

if TYPE_CHECKING:
    from accelerate import Accelerator
    from transformers import PreTrainedTokenizerBase

LOWER_IS_BETTER = ("loss", "perplexity", "ece")
Watch = Callable[[int, dict[str, float]], str | None]  # (step, validation scores) -> reason to stop, or None


@dataclass
class FitResult:
    best_dir: Path
    best_metric: float | None
    history: list[dict[str, Any]]
    steps: int
    stopped: str  # completed | max_steps | max_time | max_tokens | early_stopping
    precision: str


def planned_steps(cfg: Config, batches_per_epoch: int) -> int:
    """Optimizer steps the run plans for: the epochs, capped by max_steps."""
    steps = math.ceil(cfg.train.epochs * batches_per_epoch)
    return min(steps, cfg.train.max_steps) if cfg.train.max_steps > 0 else steps


def fit(cfg: Config, task: Trainable, model: Model, tokenizer: PreTrainedTokenizerBase, train: Features,
        evaluation: Features, precision: str, watch: Watch | None = None) -> FitResult:
    """Train `model` on `train`, evaluate on `evaluation`, keep the best as <output_dir>/best.

    `precision` ("bf16" | "fp32") is resolved once by the caller (`lmforge.run.prepare`). `watch`
    sees every evaluation's scores and may stop the run by returning a reason (a sweep prunes
    hopeless trials this way); the reason becomes `FitResult.stopped`."""
    _check_budget(cfg, len(train))
    # Autocast is applied by the loop, not by accelerate: accelerate fixes the precision once per
    # process, and one Python process may run several fits (tests, notebooks, sweeps).
    acc = parallel.make_accelerator()
    run = _Run(cfg, task, acc, train, evaluation, Path(cfg.output_dir), precision, tokenizer, watch)
    return run.go(model)


def checkpoint_activations(model: Model) -> None:
    """Recompute each layer's activations in the backward pass instead of keeping them, through
    transformers' own mechanism. Non-reentrant checkpointing needs no inputs that require grad,
    so a LoRA model's frozen embeddings need no workaround."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise LmforgeError(f"train.gradient_checkpointing: {type(model).__name__} does not support it")
    model.activation_checkpointing_enable({"use_reentrant": False})


def _check_budget(cfg: Config, n_train: int) -> None:
    t = cfg.train
    if t.batch_size < 1 or t.grad_accum < 1:
        raise LmforgeError("train.batch_size and train.grad_accum must be at least 1")
    if t.epochs <= 0 and t.max_steps <= 0:
        raise LmforgeError("train.epochs or train.max_steps must be positive")
    if n_train == 0:
        raise LmforgeError("no training examples left after validation")


class _Run:
    """State of one fit() call; split into methods only to keep each step readable."""

    def __init__(self, cfg: Config, task: Trainable, acc: Accelerator, train: Features, evaluation: Features,
                 out: Path, precision: str, tokenizer: PreTrainedTokenizerBase, watch: Watch | None):
        self.cfg, self.t, self.task, self.acc, self.watch = cfg, cfg.train, task, acc, watch
        self.train, self.evaluation, self.out, self.precision, self.tokenizer = train, evaluation, out, precision, tokenizer
        self.lengths = [len(f["input_ids"]) for f in train]
        self.batches_per_epoch = math.ceil(len(train) / self.t.batch_size)
        self.total = planned_steps(cfg, self.batches_per_epoch)
        self.metric = self.t.metric or task.default_metric
        self.lower_better = any(word in self.metric for word in LOWER_IS_BETTER)
        self.main = acc.is_main_process
        parallel.check_engine(acc, self.t.grad_accum)
        self.strategy = build_strategy(cfg, task, acc, len(train), self.total)
        self.flops_per_token = 0.0  # set in go() for tasks that report model FLOPs (MFU in the logs)

    def go(self, model: Model) -> FitResult:
        # Before the optimizer is built: frozen parameters get no optimizer state.
        self.strategy.prepare(model)
        if self.t.gradient_checkpointing:
            checkpoint_activations(model)
        optimizer = build_optimizer(model, self.t)
        self.scheduler = build_scheduler(optimizer, self.t, self.total)
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        self.optimizer = self.strategy.wrap(self.model, self.optimizer)
        state = self._start_state()
        if isinstance(self.task, CountsFlops):
            from lmforge.train.mfu import peak_flops

            self.flops_per_token = self.task.flops_per_token(model)
            self.peak = peak_flops(self.acc.device, self.precision) * self.acc.num_processes
            logger.info(f"measured {self.precision} matmul peak: {self.peak / 1e12:.2f} TFLOP/s; "
                        f"model: {self.flops_per_token / 1e6:.1f} MFLOP per training token")
        logger.info(f"training: {len(self.train)} examples, {self.total} steps of {self.t.batch_size}, "
                    f"{self.precision} on {self.acc.device} x{self.acc.num_processes}")
        stopped = self._train(state)
        if state.evaluated_at != state.step:  # budgets can stop between evaluations
            self._evaluate_and_checkpoint(state)
        self._close()
        return FitResult(self.out / "best", state.best, state.history, state.step, stopped, self.precision)

    def _start_state(self) -> TrainState:
        self.out.mkdir(parents=True, exist_ok=True)
        # A resumed run continues its log; a new run (even into an overwritten folder) starts a fresh one.
        mode = "a" if self.t.resume else "w"
        self.logs = open(self.out / "train_log.jsonl", mode, encoding="utf-8") if self.main else None
        self.tb = _tensorboard(self.out / "tensorboard") if self.main else None
        ckpt = self.out / "checkpoint"
        if not self.t.resume:
            return TrainState()
        if not (ckpt / "state.json").is_file():
            raise LmforgeError(f"--resume: no checkpoint in {ckpt}")
        saved = load_checkpoint(ckpt, self.scheduler, self.acc.process_index)
        parallel.load_full_state(self.acc, self.model, self.optimizer, saved.weights, saved.optimizer)
        state = saved.state
        self.strategy.load_state_dict(state.strategy)
        logger.info(f"resumed from {ckpt} at step {state.step}")
        return state

    def _train(self, state: TrainState) -> str:
        from tqdm.auto import tqdm

        # In a log file (no terminal) a redraw per step would bury everything else: redraw every 30 s.
        interval = 0.1 if sys.stderr.isatty() else 30.0
        bar = tqdm(total=self.total, initial=state.step, disable=not self.main, unit="step", dynamic_ncols=True,
                   mininterval=interval)
        self.model.train()
        started, stopped = time.monotonic() - state.elapsed, "completed"
        seen, tokens, window = 0, 0, time.monotonic()
        while state.step < self.total and stopped == "completed":
            plan = self.strategy.plan(self.lengths, self.t.batch_size, self.t.seed, state.epoch)
            while state.batch < len(plan) and state.step < self.total:
                batch = plan[state.batch]
                loss = self._step(batch)
                state.step, state.batch = state.step + 1, state.batch + 1
                state.elapsed = time.monotonic() - started
                batch_tokens = sum(self.lengths[i] for i in batch)
                seen, tokens, state.tokens = seen + len(batch), tokens + batch_tokens, state.tokens + batch_tokens
                bar.update(1)
                if state.step % self.t.log_every == 0 or state.step == 1:
                    self._log(state, {"train_loss": loss, "lr": self.scheduler.get_last_lr()[0],
                                      **self._throughput(seen, tokens, time.monotonic() - window)})
                    seen, tokens, window = 0, 0, time.monotonic()
                    bar.set_postfix(loss=f"{loss:.4f}", tokens_s=f"{state.history[-1]['tokens_per_s']:.0f}")
                if self.t.eval_every and state.step % self.t.eval_every == 0:
                    stopped = self._evaluate_and_checkpoint(state) or stopped
                elif self.t.save_every and state.step % self.t.save_every == 0:
                    self._checkpoint(state)
                if self.t.max_time and state.elapsed >= self.t.max_time:
                    stopped = "max_time"
                if self.t.max_tokens and state.tokens >= self.t.max_tokens:
                    stopped = "max_tokens"
                if stopped != "completed":
                    break
            if state.batch >= len(plan):
                state.epoch, state.batch = state.epoch + 1, 0
                if not self.t.eval_every and stopped == "completed":
                    stopped = self._evaluate_and_checkpoint(state) or stopped
        bar.close()
        if stopped == "completed" and self.t.max_steps and state.step >= self.t.max_steps:
            stopped = "max_steps"
        logger.info(f"training stopped ({stopped}) at step {state.step} after {state.elapsed:.0f}s")
        return stopped

    def _throughput(self, samples: int, tokens: int, seconds: float) -> dict[str, float]:
        """Rates over the last logging window; MFU when the task can count its FLOPs."""
        rates = {"samples_per_s": samples / max(seconds, 1e-9), "tokens_per_s": tokens / max(seconds, 1e-9)}
        if self.flops_per_token:
            rates["mfu"] = rates["tokens_per_s"] * self.flops_per_token / self.peak
        return rates

    def _step(self, batch: list[int]) -> float:
        """One optimizer step on one global batch; returns the batch's mean loss."""
        acc = self.acc
        # Only a Poisson batch (DP-SGD) can be empty: no forward; the strategy then decides the step.
        parts = micro_batches(batch, self.lengths, self.t.grad_accum, acc.num_processes, acc.process_index) if batch else []
        total = sum(self.task.count(self.train[i]) for i in batch)
        scale = self.strategy.loss_scale(total, acc.num_processes) if batch else 0.0
        summed = torch.zeros((), device=acc.device)
        for n, part in enumerate(parts):
            # An empty share still runs (with zero weight) so every process joins the gradient sync.
            examples, weight = (part, 1.0) if part else (batch[:1], 0.0)
            last = n == len(parts) - 1
            with nullcontext() if last else acc.no_sync(self.model):
                inputs = self._to_device(self.task.collate([self.train[i] for i in examples]))
                with autocast(self.precision, acc.device):
                    loss = self.strategy.loss(self.task, self.model, inputs) * weight
                self.strategy.backward(loss * scale)
            summed += loss.detach().sum()
        self.strategy.before_step(self.model, empty=not batch)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(acc.reduce(summed, "sum")) / max(total, 1)

    def _to_device(self, batch: Batch) -> Batch:
        return {k: v.to(self.acc.device, non_blocking=True) for k, v in batch.items()}

    def _evaluate(self, state: TrainState) -> dict[str, float]:
        """Score the evaluation split, sharded over processes, and log the result."""
        from accelerate.utils import gather_object

        acc = self.acc
        # A sharded model's every forward pass is a collective: all processes then score everything.
        mine = list(range(len(self.evaluation))) if parallel.sharded(acc) else \
            list(range(acc.process_index, len(self.evaluation), acc.num_processes))
        outputs = run_forward(self.task, parallel.evaluation_model(acc, self.model), self.evaluation,
                              self.t.batch_size * 2, acc.device, self.precision, mine)
        shards = [(mine, outputs)] if parallel.sharded(acc) else gather_object([(mine, outputs)])
        scores = self.task.score(merge_shards(shards), self.evaluation)
        record = {f"eval_{k}": v for k, v in scores.items()} | self.strategy.eval_record()
        self._log(state, record)
        logger.info("eval @ step %d: %s", state.step, ", ".join(f"{k}={v:.4f}" for k, v in scores.items()))
        return scores

    def _evaluate_and_checkpoint(self, state: TrainState) -> str | None:
        """Evaluate, keep the best model, write a resumable checkpoint; 'early_stopping' when patience runs out."""
        scores = self._evaluate(state)
        state.evaluated_at = state.step
        if self.metric not in scores:
            raise LmforgeError(f"train.metric '{self.metric}' is not computed (available: {', '.join(scores)})")
        value = scores[self.metric]
        improved = state.best is None or (value < state.best if self.lower_better else value > state.best)
        if improved:
            state.best, state.bad_evals = value, 0
            weights = parallel.sharded_weights(self.acc, self.model)
            if self.main:
                save_model_folder(self.out / "best", self.acc.unwrap_model(self.model), self.tokenizer, self.cfg,
                                  privacy=self.strategy.card(), weights=weights)
            logger.info(f"new best {self.metric}={value:.4f}: saved {self.out / 'best'}")
        elif not scores.get(COLLAPSED):
            state.bad_evals += 1
        self._checkpoint(state)
        if self.t.patience and state.bad_evals >= self.t.patience:
            return "early_stopping"
        return self.watch(state.step, scores) if self.watch else None

    def _checkpoint(self, state: TrainState) -> None:
        from accelerate.utils import gather_object

        state.strategy = self.strategy.state_dict()
        rngs = gather_object([rng_state()])  # one entry per process, in rank order
        weights = parallel.full_weights(self.acc, self.model)  # every process joins: FSDP gathers the shards
        optimizer = parallel.full_optimizer_state(self.acc, self.model, self.optimizer)
        if self.main:
            save_checkpoint(self.out / "checkpoint", weights, optimizer, self.scheduler, state, rngs)
        self.acc.wait_for_everyone()

    def _log(self, state: TrainState, values: dict[str, float]) -> None:
        record = {"step": state.step, "epoch": round(state.epoch + state.batch / self.batches_per_epoch, 4),
                  "tokens": state.tokens, "elapsed_s": round(state.elapsed, 1), **values}
        state.history.append(record)
        if self.logs:
            self.logs.write(json.dumps(record) + "\n")
            self.logs.flush()
        if self.tb:
            for key, value in values.items():
                self.tb.add_scalar(key, value, state.step)

    def _close(self) -> None:
        if self.logs:
            self.logs.close()
        if self.tb:
            self.tb.close()


def _tensorboard(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional; the JSONL log always exists
        return None
    return SummaryWriter(str(folder))
