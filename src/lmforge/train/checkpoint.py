"""Saving: model folders anyone can load, and resumable checkpoints, both written atomically."""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmforge import config as config_mod
from lmforge.atomic import write_dir
from lmforge.errors import LmforgeError
from lmforge.models.folder import CONFIG_FILE


@dataclass
class TrainState:
    """Where training stands; with the weights, optimizer, scheduler and RNG it restarts a run exactly."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # batches of the current epoch already done
    best: float | None = None
    bad_evals: int = 0
    elapsed: float = 0.0
    evaluated_at: int = -1  # step of the last evaluation
    tokens: int = 0  # input tokens trained on (not padding), for train.max_tokens
    strategy: dict[str, Any] = field(default_factory=dict)  # e.g. DP-SGD's accountant history: resume keeps the budget
    history: list[dict[str, Any]] = field(default_factory=list)


def save_model_folder(folder: Path, model: Any, tokenizer: Any, cfg: Any,
                      privacy: dict[str, Any] | None = None, weights: dict[str, torch.Tensor] | None = None) -> None:
    """A standard HF folder (safetensors, config, tokenizer) plus the run config that made it and a
    model card stating its privacy guarantee (`privacy`: `DPTraining.card()`, None without DP).
    `weights`: the whole weights gathered from a model sharded over processes (FSDP), whose own
    parameters are only this process's shards; None saves the model's own."""
    from lmforge.privacy.card import write_card

    model = _standalone(model) if weights is None else model

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp, state_dict=weights, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        config_mod.save(cfg, tmp / CONFIG_FILE)
        write_card(tmp, cfg, privacy)

    write_dir(folder, fill)


def _standalone(model: Any) -> Any:
    """The model to save: itself, or, for LoRA on a base that has no folder (built from
    model.preset), a merged copy. An adapter folder names its base by path, and random preset
    weights exist nowhere else, so the adapters alone could never be loaded again."""
    import copy

    adapters = getattr(model, "peft_config", None)
    if not adapters or all(a.base_model_name_or_path for a in adapters.values()):
        return model
    return copy.deepcopy(model).merge_and_unload()


@dataclass
class Saved:
    """What a checkpoint restores besides the scheduler and RNG: where training stood, and the
    whole weights and optimizer state for `train.parallel.load_full_state` to hand to the model."""

    state: TrainState
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]


def save_checkpoint(folder: Path, weights: dict[str, torch.Tensor], optimizer_state: dict[str, Any], scheduler: Any,
                    state: TrainState, rng_states: list[dict[str, Any]]) -> None:
    """Everything `load_checkpoint` needs; `weights` and `optimizer_state` are whole (gathered from
    every process under FSDP, `train.parallel`), `rng_states` holds one entry per process.

    Nothing in a checkpoint is a pickle of arbitrary objects: weights are safetensors, optimizer and
    scheduler states are tensors and plain values that `torch.load(weights_only=True)` reads, and the
    rest is JSON. A run folder copied from elsewhere can then be resumed without running its code.
    """
    from safetensors.torch import save_file

    def fill(tmp: Path) -> None:
        save_file(weights, str(tmp / "model.safetensors"))
        torch.save(optimizer_state, tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "rng.json").write_text(json.dumps(rng_states))
        (tmp / "state.json").write_text(json.dumps(asdict(state), indent=1))

    write_dir(folder, fill)


def load_checkpoint(folder: Path, scheduler: Any, rank: int) -> Saved:
    """Read every file, restore the scheduler and this process's RNG, return the rest.

    Every file is read without unpickling objects; one that does not parse is refused by name."""
    from safetensors.torch import load_file

    weights = _read(folder / "model.safetensors", lambda path: load_file(str(path)))
    optimizer = _read(folder / "optimizer.pt", _tensors_only)
    scheduler.load_state_dict(_read(folder / "scheduler.pt", _tensors_only))
    rngs = _read(folder / "rng.json", lambda path: json.loads(path.read_text()))
    set_rng_state(rngs[rank % len(rngs)])  # resumed on more processes than wrote it: reuse a state
    return Saved(TrainState(**_read(folder / "state.json", lambda path: json.loads(path.read_text()))), weights,
                 optimizer)


def _tensors_only(path: Path) -> Any:
    return torch.load(path, weights_only=True, map_location="cpu")


def _read(path: Path, load: Any) -> Any:
    """`load(path)`, with any failure (missing, truncated, foreign or crafted file) as one clear error."""
    if not path.is_file():
        raise LmforgeError(f"--resume: {path} is missing; the checkpoint is incomplete or from an older lmforge")
    try:
        return load(path)
    except Exception as exc:  # safetensors, torch's restricted unpickler and json each raise their own types
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LmforgeError(f"--resume: refused {path}: not a valid checkpoint file ({reason[:200]})") from None


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states of this process (dropout draws from torch's), as JSON values."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {"python": [version, list(internal), gauss],
                             "numpy": [name, keys.tolist(), pos, has_gauss, cached],
                             "torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])
