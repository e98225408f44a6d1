"""Attribution methods, all through Captum: each scores every token of a batch of (text, target) rows.

- ig: integrated gradients on the input embeddings (LayerIntegratedGradients), from a baseline that
  puts the [PAD] embedding at every text position and keeps special tokens (Captum's BERT recipe).
- gradxinput: gradient x input on the input embeddings (LayerGradientXActivation, the layer form of
  InputXGradient): one backward pass, the cheapest.
- occlusion: leave-one-out (FeatureAblation over tokens): the drop in the target probability when
  the token is deleted. One forward pass per token, no gradients: works on int8-dynamic models.
- shap: Shapley value sampling over tokens; samples x (tokens + 1) forward passes, so short texts only.

Scores are per position of the encoded text, 0 at special positions; positive supports the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from lmforge.errors import LmforgeError
from lmforge.explain.scorer import DELETED, Encoded, Scorer

Row = tuple[Encoded, int]  # a text and the class (or label) whose probability is attributed


@dataclass(frozen=True)
class Budget:
    """How much work one explanation may cost."""

    # points on the path from baseline to input (Gauss-Legendre): more is closer to exact. 8 keeps a 128-token
    # text under a second on 2 cores; in bench/explain.py 8 points kept comprehensiveness at 7x random (32: 8.6x)
    ig_steps: int = 8
    shap_samples: int = 8  # token permutations sampled per text
    shap_max_tokens: int = 64  # longer texts are refused by shap: its cost grows with samples x tokens
    random_draws: int = 3  # random rankings averaged for the faithfulness reference


@dataclass(frozen=True)
class Method:
    name: str
    gradient: bool  # needs gradients through the model (not on int8-dynamic folders)
    attribute: Callable[[Scorer, list[Row], Budget], list[np.ndarray]]


def _padded(scorer: Scorer, rows: list[Row]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input ids padded with [PAD], attention mask, baseline ids with [PAD] at text positions, targets)."""
    width = max(len(e.ids) for e, _ in rows)
    ids = torch.full((len(rows), width), scorer.pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, (e, _) in enumerate(rows):
        ids[i, : len(e.ids)], mask[i, : len(e.ids)] = torch.as_tensor(e.ids), 1
    baseline = ids.clone()
    for i, (e, _) in enumerate(rows):
        baseline[i, e.content] = scorer.pad_id
    targets = torch.as_tensor([t for _, t in rows])
    return ids.to(scorer.device), mask.to(scorer.device), baseline.to(scorer.device), targets.to(scorer.device)


def _per_row(attributions: torch.Tensor, rows: list[Row]) -> list[np.ndarray]:
    """Each row's scores over its own positions, 0 at special tokens."""
    out = []
    for values, (e, _) in zip(attributions.detach().float().cpu().numpy(), rows):
        scores = np.zeros(len(e.ids))
        scores[e.content] = values[e.content]
        out.append(scores)
    return out


def _integrated_gradients(scorer: Scorer, rows: list[Row], budget: Budget) -> list[np.ndarray]:
    from captum.attr import LayerIntegratedGradients

    ids, mask, baseline, targets = _padded(scorer, rows)
    method = LayerIntegratedGradients(scorer.forward, scorer.model.get_input_embeddings())
    with torch.enable_grad():
        attributions = method.attribute(ids, baselines=baseline, target=targets, additional_forward_args=(mask,),
                                        n_steps=budget.ig_steps, internal_batch_size=scorer.batch_size)
    return _per_row(attributions.sum(-1), rows)


def _gradient_x_input(scorer: Scorer, rows: list[Row], budget: Budget) -> list[np.ndarray]:
    from captum.attr import LayerGradientXActivation

    ids, mask, _, targets = _padded(scorer, rows)
    method = LayerGradientXActivation(scorer.forward, scorer.model.get_input_embeddings())
    with torch.enable_grad():
        attributions = method.attribute(ids, target=targets, additional_forward_args=(mask,))
    return _per_row(attributions.sum(-1), rows)


def _deletions(scorer: Scorer, rows: list[Row]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows padded with DELETED, baselines deleting only text tokens, feature mask, targets).

    Feature 0 groups special tokens and padding, whose baseline is themselves: ablating it changes
    nothing, so they get no attribution. Features 1..n are the text tokens in order.
    """
    width = max(len(e.ids) for e, _ in rows)
    inputs = torch.full((len(rows), width), DELETED, dtype=torch.long)
    features = torch.zeros_like(inputs)
    for i, (e, _) in enumerate(rows):
        inputs[i, : len(e.ids)] = torch.as_tensor(e.ids)
        features[i, e.content] = torch.arange(1, len(e.content) + 1)
    baselines = torch.where(features > 0, torch.full_like(inputs, DELETED), inputs)
    targets = torch.as_tensor([t for _, t in rows])
    return inputs.to(scorer.device), baselines.to(scorer.device), features.to(scorer.device), targets.to(scorer.device)


def _occlusion(scorer: Scorer, rows: list[Row], budget: Budget) -> list[np.ndarray]:
    from captum.attr import FeatureAblation

    inputs, baselines, features, targets = _deletions(scorer, rows)
    with torch.no_grad():
        attributions = FeatureAblation(scorer.forward_deleted).attribute(
            inputs, baselines=baselines, target=targets, feature_mask=features,
            perturbations_per_eval=max(1, scorer.batch_size // len(rows)))
    return _per_row(attributions, rows)


def _shapley(scorer: Scorer, rows: list[Row], budget: Budget) -> list[np.ndarray]:
    from captum.attr import ShapleyValueSampling

    longest = max(len(e.content) for e, _ in rows)
    if longest > budget.shap_max_tokens:
        raise LmforgeError(f"shap explains texts of at most {budget.shap_max_tokens} tokens (this one has {longest}): "
                           "use --method ig or occlusion for longer texts")
    inputs, baselines, features, targets = _deletions(scorer, rows)
    with torch.no_grad():
        attributions = ShapleyValueSampling(scorer.forward_deleted).attribute(
            inputs, baselines=baselines, target=targets, feature_mask=features, n_samples=budget.shap_samples,
            perturbations_per_eval=max(1, scorer.batch_size // len(rows)))
    return _per_row(attributions, rows)


METHODS: dict[str, Method] = {
    "ig": Method("ig", True, _integrated_gradients),
    "gradxinput": Method("gradxinput", True, _gradient_x_input),
    "occlusion": Method("occlusion", False, _occlusion),
    "shap": Method("shap", False, _shapley),
}
