"""Privacy audit metrics, pure functions on arrays: membership inference and canary exposure.

Both measure what a trained model gives away about its training data, from the outside:

* Loss-threshold membership inference (Yeom et al. 2018): an attacker guesses "was in training"
  when an example's loss is below a threshold. The AUC over all thresholds is 0.5 for a model
  that leaks nothing about membership and 1.0 for one that can be read like a list of its data.
* Canary exposure (Carlini et al. 2019, "The Secret Sharer"): random secrets are planted in the
  training data; exposure = log2|R| - log2 rank(secret) among all |R| candidates, ranked by the
  model's log-perplexity. log2|R| bits means the model ranks the true secret first: it can be
  extracted by enumeration. A model that never saw it scores ~1-1.5 bits (a random rank).
"""

from __future__ import annotations

import math

import numpy as np


def membership_inference(train_losses: np.ndarray, holdout_losses: np.ndarray) -> dict[str, float]:
    """Loss-threshold attack: ROC AUC, best advantage (max TPR - FPR), and TPR at 1% FPR.

    TPR at a low FPR is reported beside the AUC because an attack that confidently identifies a
    few members is a real leak even when the average-case AUC is near 0.5 (Carlini et al. 2022).
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    train, holdout = np.asarray(train_losses, float), np.asarray(holdout_losses, float)
    is_member = np.concatenate([np.ones(len(train)), np.zeros(len(holdout))])
    score = -np.concatenate([train, holdout])  # lower loss -> more likely a member
    fpr, tpr, _ = roc_curve(is_member, score)
    return {"auc": float(roc_auc_score(is_member, score)),
            "advantage": float(np.max(tpr - fpr)),
            "tpr_at_1pct_fpr": float(np.max(tpr[fpr <= 0.01], initial=0.0)),
            "train_loss": float(train.mean()), "holdout_loss": float(holdout.mean()),
            "n_train": len(train), "n_holdout": len(holdout)}


def exposure(secret_score: float, candidate_scores: np.ndarray) -> float:
    """Exposure of one secret from its log-perplexity and that of other candidates (lower = likelier).

    With every other candidate of the space scored (|R| - 1 of them) this is the exact
    log2|R| - log2 rank. With a uniform random sample of m candidates it is Carlini's sampling
    estimate -log2((k + 1) / (m + 1)), k = sampled candidates scored at least as likely: the rank
    fraction cannot be resolved below 1/(m + 1), so a secret ranked first reads log2(m + 1) bits,
    a lower bound. Ties count against the secret, so exposure is never overstated.
    """
    scores = np.asarray(candidate_scores, float)
    ahead = int(np.sum(scores <= secret_score))
    return math.log2(len(scores) + 1) - math.log2(ahead + 1)


def extrapolated_exposure(secret_score: float, candidate_scores: np.ndarray) -> float:
    """Carlini's extrapolation past the sampling limit: fit a skew-normal to the candidates'
    log-perplexities and read -log2 of the fitted CDF at the secret's score."""
    from scipy.stats import skewnorm

    params = skewnorm.fit(np.asarray(candidate_scores, float))
    return float(-skewnorm.logcdf(secret_score, *params) / math.log(2))
