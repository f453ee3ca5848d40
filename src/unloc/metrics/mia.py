"""Membership inference on the forget set (MIA) and privleak: functions of scores, no model.

An attack gives every item a score that is *lower* the more the model looks like it was trained
on the item: its mean answer NLL (``loss``), the negated mean of its lowest token log-probs
(``min_k_score``: Min-k% Prob, Shi et al. 2024), or its NLL over the zlib-compressed length of
its text (``zlib_score``: Carlini et al. 2021). ``mia_auc`` is the ROC AUC of telling the
holdout items (positives) from the forget items by that score: 1 when every forget item scores
below every holdout item (the model knows the forget set better than text it never saw), 0.5
when the two cannot be told apart, as for a model never trained on either. These are
open-unlearning's conventions (labels forget 0, holdout 1), so the numbers sit next to its.

``privleak`` compares a model's AUC with a reference model's (θr, trained without the forget
set): the relative difference of 1 - AUC, in percent. 0 means the unlearned model leaks
membership exactly as much as the retain model; -100 means an AUC of 1 against a reference
of 0.5.
"""

from __future__ import annotations

import zlib

import numpy as np
from scipy.stats import rankdata

PRIVLEAK_EPS = 1e-10
"""Added to privleak's denominator, as open-unlearning does, so a reference AUC of 1 gives a
large finite number instead of a division by zero."""


def min_k_score(token_logps, k: float = 0.4) -> float:
    """Min-k% Prob: minus the mean of the ``max(1, int(n * k))`` lowest of an answer's n token
    log-probs (0 for an answer with no tokens)."""
    if not 0 < k <= 1:
        raise ValueError(f"min-k's k is a fraction in (0, 1], got {k}")
    logps = np.sort(np.asarray(token_logps, dtype=np.float64).ravel())
    if logps.size == 0:
        return 0.0
    return float(-logps[: max(1, int(logps.size * k))].mean())


def zlib_score(mean_nll: float, text: str) -> float:
    """An answer's mean NLL over the zlib-compressed length of its text in bytes: text that
    compresses well (repetitive, easy to guess) needs a lower loss to look remembered."""
    return float(mean_nll) / len(zlib.compress(text.encode("utf-8")))


def mia_auc(forget_scores, holdout_scores) -> float:
    """ROC AUC with the holdout items as positives, ties counted half: the share of (forget,
    holdout) pairs in which the holdout item scores higher. Computed from ranks (the
    Mann-Whitney U statistic), which is exactly the pair count."""
    forget = np.asarray(forget_scores, dtype=np.float64).ravel()
    holdout = np.asarray(holdout_scores, dtype=np.float64).ravel()
    if forget.size == 0 or holdout.size == 0:
        raise ValueError(f"MIA AUC needs forget and holdout scores, got {forget.size} and {holdout.size}")
    if not (np.isfinite(forget).all() and np.isfinite(holdout).all()):
        raise ValueError("MIA scores must be finite")
    ranks = rankdata(np.concatenate([forget, holdout]))  # average ranks: a tie counts half
    u_holdout = ranks[forget.size:].sum() - holdout.size * (holdout.size + 1) / 2
    return float(u_holdout / (forget.size * holdout.size))


def privleak(auc: float, reference_auc: float = 0.5) -> float:
    """Relative difference of 1 - AUC against the reference model's, in percent (open-unlearning's
    privleak; 0.5, the AUC of a model that cannot tell the sets apart, when no reference is given)."""
    for name, value in (("auc", auc), ("reference_auc", reference_auc)):
        if not 0 <= value <= 1:
            raise ValueError(f"privleak's {name} is an AUC in [0, 1], got {value}")
    score, reference = 1 - auc, 1 - reference_auc
    return float((score - reference) / (reference + PRIVLEAK_EPS) * 100)
