"""`lmforge audit MODEL --data TRAIN --holdout TEST [--canaries C.json]`: what the model leaks.

Membership inference works for any task (it needs only per-example losses); canary exposure needs
a generation model trained on a file canaried with `lmforge canary`. Results go to audit.json
beside the model's own privacy record (its DP epsilon), so DP and non-DP runs compare side by side.
"""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.atomic import write_json
from lmforge.errors import LmforgeError
from lmforge.inference import Loaded, load
from lmforge.log import logger
from lmforge.outputs import Output, check_outputs
from lmforge.privacy.attacks import exposure, extrapolated_exposure, membership_inference
from lmforge.privacy.canary import Canaries
from lmforge.privacy.card import read_privacy


def run(model: str, data: str, holdout: str, out: str | None = None, canaries: str | None = None,
        candidates: int = 1000, max_examples: int = 2000, precision: str = "auto", batch_size: int = 64,
        seed: int = 0, overwrite: bool = False) -> dict[str, Any]:
    """Audit the model folder `model`; write <out or model>/audit.json and print a table.

    By default the audit joins the model's folder, beside its privacy record: it adds a file there
    and replaces nothing of the model (an earlier audit.json only with `--overwrite`)."""
    path = Path(out or model) / "audit.json"
    check_outputs([Output(path, "--out", "file")], [data, holdout, canaries], overwrite)
    if Path(holdout).resolve() == Path(data).resolve():
        raise LmforgeError(f"--holdout {holdout} is the training file --data itself: membership inference compares "
                           "the model's members with a file it never saw")
    loaded = load(model, precision=precision, batch_size=batch_size)
    _warn_held_out_members(loaded, data)
    result: dict[str, Any] = {"model": model, "privacy": read_privacy(Path(model)) or "no differential privacy"}
    result["membership_inference"] = membership_inference(
        _example_losses(loaded, data, max_examples, seed), _example_losses(loaded, holdout, max_examples, seed))
    if canaries:
        result["canaries"] = canary_exposure(loaded, Canaries.load(Path(canaries)), candidates, seed)
    write_json(path, result)
    print(render(result))
    logger.info(f"wrote {path}")
    return result


def canary_exposure(loaded: Loaded, canaries: Canaries, candidates: int, seed: int) -> dict[str, Any]:
    """Exposure of every planted secret: its answer log-perplexity against `candidates` others'."""
    task = loaded.generator("be audited with canaries (canary exposure needs a generation model)")
    rows = []
    for i, secret in enumerate(canaries.secrets):
        others = canaries.candidates(secret, candidates, seed + i)
        split = task.conversation_split([canaries.conversation(s) for s in [secret, *others]])
        nll = loaded.outputs(split)["nll"]  # summed over answer tokens: -log p(canary | prompt)
        rows.append({"secret": secret, "exposure": exposure(nll[0], nll[1:]),
                     "extrapolated": extrapolated_exposure(nll[0], nll[1:])})
    exact = candidates >= canaries.space_size - 1
    return {"space_bits": math.log2(canaries.space_size), "candidates": min(candidates, canaries.space_size - 1),
            "estimate": "exact" if exact else f"sampled (at most {math.log2(candidates + 1):.2f} bits resolvable)",
            "repeat": canaries.repeat, "mean_exposure": float(np.mean([r["exposure"] for r in rows])),
            "secrets": rows}


def _warn_held_out_members(loaded: Loaded, data: str) -> None:
    """Rows the run held out of its training file for validation were never trained on, but count as
    members here: the AUC is then diluted towards 0.5 by that share."""
    d = loaded.cfg.data
    if not d.validation and d.train and Path(d.train).resolve() == Path(data).resolve():
        logger.warning(f"{data}: the run held out {d.validation_fraction:.0%} of this file for validation; those "
                       "rows count as members here, so the AUC slightly understates the leak")


def _example_losses(loaded: Loaded, path: str, limit: int, seed: int) -> np.ndarray:
    """Per-example loss on a labelled file: cross-entropy per text, or mean loss per answer token."""
    split = _sample(loaded.task.read_split(path), limit, seed)
    outputs = loaded.outputs(split)
    if "loss" in outputs:
        return outputs["loss"]
    return outputs["nll"] / np.maximum(outputs["tokens"], 1)


def _sample(split: Any, limit: int, seed: int) -> Any:
    """At most `limit` examples of a split, drawn without replacement (every per-example list field)."""
    size = len(split.locations)
    if not limit or size <= limit:
        return split
    keep = sorted(random.Random(seed).sample(range(size), limit))
    picked = {f.name: [value[i] for i in keep] for f in dataclasses.fields(split)
              if isinstance(value := getattr(split, f.name), list) and len(value) == size}
    return dataclasses.replace(split, **picked)


def render(result: dict[str, Any]) -> str:
    """The audit as a plain-text table."""
    privacy = result["privacy"]
    dp = privacy if isinstance(privacy, str) else f"epsilon {privacy['epsilon']:.3g}, delta {privacy['delta']:.3g}"
    mia = result["membership_inference"]
    lines = [f"privacy: {dp}", "", "membership inference (loss threshold)",
             f"  AUC {mia['auc']:.4f}   advantage {mia['advantage']:.4f}   TPR@1%FPR {mia['tpr_at_1pct_fpr']:.4f}",
             f"  mean loss: train {mia['train_loss']:.4f} ({mia['n_train']}), holdout {mia['holdout_loss']:.4f} "
             f"({mia['n_holdout']})"]
    if "canaries" in result:
        c = result["canaries"]
        lines += ["", f"canary exposure (max {c['space_bits']:.2f} bits, {c['estimate']}, repeat {c['repeat']})",
                  "  secret      exposure  extrapolated"]
        lines += [f"  {r['secret']:<10}  {r['exposure']:8.2f}  {r['extrapolated']:12.2f}" for r in c["secrets"]]
        lines.append(f"  mean        {c['mean_exposure']:8.2f}")
    return "\n".join(lines)
