"""Champion vs challenger on live labelled traffic, from the prediction log.

When shadow scoring is on (`serving.shadow`), the prediction log holds, for a sampled share of
requests, the champion's answer and the challenger's score side by side; `/feedback` labels
arrive later. `live_comparison` reads those pairs for a window (`read_shadow_pairs`), keeps
the labelled ones and computes the same figures for both models on the *same* rows, so a
promotion gate can ask "is the challenger at least as good on what production actually saw?".

Figures per model (None when they cannot be computed, e.g. one class only): `roc_auc`,
`balanced_accuracy` and `f1` at the given decision threshold, `log_loss`, `brier`, and the
row counts. Nothing here decides; the gate applies its own tolerances.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from core.usecases import DEFAULT_USE_CASE
from serving.prediction_store import read_shadow_pairs

ROLES = ("champion", "challenger")


def _figures(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    from sklearn.metrics import (
        balanced_accuracy_score,
        brier_score_loss,
        f1_score,
        log_loss,
        roc_auc_score,
    )

    both = len(np.unique(labels)) == 2
    predicted = (scores >= threshold).astype(int)
    clipped = np.clip(scores, 1e-15, 1 - 1e-15)
    return {
        "roc_auc": float(roc_auc_score(labels, scores)) if both else None,
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)) if both else None,
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "log_loss": float(log_loss(labels, clipped, labels=[0, 1])),
        "brier": float(brier_score_loss(labels, scores)),
    }


def compare_pairs(pairs: pd.DataFrame, threshold: float | dict[str, float] = 0.5) -> dict[str, Any]:
    """Per-model figures on the labelled rows of a `read_shadow_pairs` frame.

    `threshold` is one decision threshold for both, or {"champion": t, "challenger": t} for
    each model's own (its version's `decision_threshold` tag).

    Returns {"rows": shadow-scored rows, "labelled_rows": n, "positives": n,
    "champion": {"versions": [...], figures...}, "challenger": {...}}; figures are None
    without labelled rows. Rows of several champion or challenger versions are pooled (their
    versions are listed); filter the frame first to compare one pair of versions.
    """
    labelled = pairs[pairs["feedback_label"].notna()]
    labels = labelled["feedback_label"].astype("int64").to_numpy()
    result: dict[str, Any] = {
        "rows": len(pairs),
        "labelled_rows": len(labelled),
        "positives": int(labels.sum()),
        "threshold": threshold,
    }
    for role in ROLES:
        versions = sorted({str(v) for v in pairs[f"{role}_version"]})
        cut = threshold[role] if isinstance(threshold, dict) else threshold
        figures: dict[str, Any] = {"versions": versions, "threshold": cut}
        if len(labelled):
            scores = labelled[f"{role}_score"].astype("float64").to_numpy()
            figures.update(_figures(labels, scores, cut))
        else:
            figures.update(
                dict.fromkeys(("roc_auc", "balanced_accuracy", "f1", "log_loss", "brier"))
            )
        result[role] = figures
    return result


def live_comparison(
    url: str | None,
    start: datetime,
    end: datetime,
    use_case: str = DEFAULT_USE_CASE,
    threshold: float | dict[str, float] = 0.5,
    challenger_version: str | None = None,
    champion_version: str | None = None,
) -> dict[str, Any]:
    """Champion vs challenger figures on the labelled shadow-scored predictions in [start, end).

    `url` None reads the default prediction log; `challenger_version` keeps only rows that
    version scored (the one a gate is deciding about), `champion_version` only rows that
    version answered (the one it is compared with).
    """
    pairs = read_shadow_pairs(url, start, end, use_case=use_case)
    if challenger_version is not None:
        pairs = pairs[pairs["challenger_version"] == str(challenger_version)]
    if champion_version is not None:
        pairs = pairs[pairs["champion_version"] == str(champion_version)]
    return compare_pairs(pairs, threshold)
