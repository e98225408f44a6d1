"""The model card (README.md) of a saved model folder, stating its privacy guarantee.

A model folder travels without its run directory, so what was (or was not) done to protect the
training data is written into the folder itself: README.md for people, privacy.json for tools
(`lmforge audit` reports it beside its measurements, `lmforge merge` carries it on).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmforge.config import Config
from lmforge.privacy.dp import dp_enabled

PRIVACY_FILE = "privacy.json"


def model_card(cfg: Config, privacy: dict[str, Any] | None) -> str:
    """README.md text: what the model is, how it was trained, and its differential-privacy status."""
    source = f"preset `{cfg.model.preset}` (random initial weights)" if cfg.model.preset else f"`{cfg.model.path}`"
    lines = ["# Model card", "", f"- task: {cfg.task}", f"- method: {cfg.method}", f"- base model: {source}",
             f"- training data: `{cfg.data.train}`",
             f"- PII redaction of the data: {'yes' if cfg.data.redact_pii else 'no'}",
             "", "## Privacy", ""]
    return "\n".join(lines + _privacy_lines(cfg, privacy)) + "\n"


def _privacy_lines(cfg: Config, privacy: dict[str, Any] | None) -> list[str]:
    if privacy:
        return [f"Trained with differential privacy (DP-SGD): ({privacy['epsilon']:.4g}, {privacy['delta']:.3g})-DP "
                "with respect to one training example.", "",
                "| setting | value |", "|---|---|",
                f"| epsilon (spent) | {privacy['epsilon']:.4g} |", f"| delta | {privacy['delta']:.3g} |",
                f"| noise multiplier | {privacy['noise_multiplier']:.4g} |",
                f"| clipping bound (max_grad_norm) | {_bound(privacy)} |",
                f"| sampling rate (Poisson) | {privacy['sample_rate']:.4g} |",
                f"| expected batch size | {privacy['batch_size']} |", f"| steps | {privacy['steps']} |",
                f"| accountant | {privacy['accountant']} |"]
    if dp_enabled(cfg.privacy.dp):  # a folder saved without its accountant's numbers
        dp = cfg.privacy.dp
        return [f"Trained with DP-SGD (privacy.dp: target_epsilon={dp.target_epsilon}, noise_multiplier="
                f"{dp.noise_multiplier}, max_grad_norm={dp.max_grad_norm}, accountant={dp.accountant}); "
                "the epsilon spent was not recorded with this folder: see the run's metrics.json."]
    return ["Trained with no differential privacy: the weights may reveal training examples. "
            "Do not release them if the training data is confidential."]


def _bound(privacy: dict[str, Any]) -> str:
    if not privacy.get("clip_quantile"):  # a fixed bound, or a record written before bounds adapted
        return f"{privacy['max_grad_norm']:g}"
    return (f"adaptive, toward the {privacy['clip_quantile']:g} quantile of the per-example gradient norms: "
            f"{privacy['clip_start']:.3g} at the start, {privacy['max_grad_norm']:.3g} at the end")


def write_card(folder: Path, cfg: Config, privacy: dict[str, Any] | None) -> None:
    """README.md (replacing any template card a library wrote) and, for DP runs, privacy.json."""
    (folder / "README.md").write_text(model_card(cfg, privacy), encoding="utf-8")
    if privacy:
        (folder / PRIVACY_FILE).write_text(json.dumps(privacy, indent=1), encoding="utf-8")


def read_privacy(folder: Path) -> dict[str, Any] | None:
    """The DP record saved with a model folder, or None for a non-private (or foreign) model."""
    path = Path(folder) / PRIVACY_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
