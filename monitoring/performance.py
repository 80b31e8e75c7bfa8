"""Realised performance once feedback labels arrive: the concept-drift check.

Data drift says traffic changed; only labels say whether the model got worse.
This compares accuracy and ROC-AUC on a labelled window of logged predictions
with the champion's figures on its held-out test split. A window with too few
labels decides nothing (`insufficient_labels`); a window with one class only
has no ROC-AUC, which is reported, not raised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from monitoring.config import DriftThresholds

OK = "ok"
CONCEPT_DRIFT = "concept_drift"
INSUFFICIENT_LABELS = "insufficient_labels"

# Keys under which a champion's test figures may be recorded (training logs
# them with or without a "test_" prefix).
_METRIC_KEYS = {
    "accuracy": ("accuracy", "test_accuracy"),
    "roc_auc": ("roc_auc", "test_roc_auc"),
}


def _champion_figure(metrics: Mapping[str, Any], name: str) -> float | None:
    for key in _METRIC_KEYS[name]:
        if key in metrics and metrics[key] is not None:
            return float(metrics[key])
    return None


def _labelled(
    labels: Sequence[Any] | np.ndarray | pd.Series, scores: Sequence[float] | np.ndarray | pd.Series
) -> tuple[np.ndarray, np.ndarray]:
    raw_y = pd.Series(np.asarray(labels, dtype=object).ravel())
    y = pd.to_numeric(raw_y, errors="coerce")
    p = pd.to_numeric(pd.Series(np.asarray(scores, dtype=object).ravel()), errors="coerce")
    if len(y) != len(p):
        raise ValueError(f"labels ({len(y)}) and scores ({len(p)}) must have the same length")
    unreadable = raw_y[raw_y.notna() & y.isna()]
    if len(unreadable):
        raise ValueError(
            f"labels must be 0/1 (or missing); found {unreadable.unique()[:5].tolist()}"
        )
    keep = y.notna() & p.notna()
    y, p = y[keep], p[keep]
    bad = sorted(set(y.unique()) - {0, 1})
    if bad:
        raise ValueError(f"labels must be 0/1 (or missing); found {bad[:5]}")
    if len(p) and (p.min() < 0.0 or p.max() > 1.0):
        raise ValueError(f"scores must be probabilities in [0, 1]; found [{p.min()}, {p.max()}]")
    return y.to_numpy(dtype="int64"), p.to_numpy(dtype="float64")


def realised_performance(
    labels: Sequence[Any] | np.ndarray | pd.Series,
    scores: Sequence[float] | np.ndarray | pd.Series,
    champion_test_metrics: Mapping[str, Any],
    thresholds: DriftThresholds,
) -> dict[str, Any]:
    """Accuracy/ROC-AUC on the labelled rows and their drop against the champion's test figures.

    Rows whose label (or score) is missing are ignored: feedback arrives for
    some predictions only. A drop is `champion - realised`, so positive = worse.
    """
    y, p = _labelled(labels, scores)
    n = int(y.size)
    counts = {"0": int((y == 0).sum()), "1": int((y == 1).sum())}
    notes: list[str] = []
    accuracy = (
        float(((p >= thresholds.decision_threshold).astype("int64") == y).mean()) if n else None
    )
    roc_auc: float | None = None
    if n and counts["0"] and counts["1"]:
        roc_auc = float(roc_auc_score(y, p))
    elif n:
        only = "1" if counts["1"] else "0"
        notes.append(f"roc_auc undefined: the labelled window holds only class {only} ({n} rows)")

    champion_accuracy = _champion_figure(champion_test_metrics, "accuracy")
    champion_roc_auc = _champion_figure(champion_test_metrics, "roc_auc")
    for name, value in (("accuracy", champion_accuracy), ("roc_auc", champion_roc_auc)):
        if value is None:
            notes.append(f"champion test {name} missing from champion_test_metrics; no delta")

    accuracy_drop = (
        champion_accuracy - accuracy
        if accuracy is not None and champion_accuracy is not None
        else None
    )
    roc_auc_drop = (
        champion_roc_auc - roc_auc if roc_auc is not None and champion_roc_auc is not None else None
    )

    reasons: list[dict[str, Any]] = []
    if n < thresholds.min_labels:
        status = INSUFFICIENT_LABELS
        notes.append(
            f"{n} labelled rows, fewer than min_labels={thresholds.min_labels}: no decision"
        )
    else:
        if accuracy_drop is not None and accuracy_drop > thresholds.max_accuracy_drop:
            reasons.append(
                {
                    "metric": "accuracy_drop",
                    "value": accuracy_drop,
                    "threshold": thresholds.max_accuracy_drop,
                    "detail": f"accuracy {accuracy:.3f} vs champion test {champion_accuracy:.3f}",
                }
            )
        if roc_auc_drop is not None and roc_auc_drop > thresholds.max_roc_auc_drop:
            reasons.append(
                {
                    "metric": "roc_auc_drop",
                    "value": roc_auc_drop,
                    "threshold": thresholds.max_roc_auc_drop,
                    "detail": f"ROC-AUC {roc_auc:.3f} vs champion test {champion_roc_auc:.3f}",
                }
            )
        status = CONCEPT_DRIFT if reasons else OK

    return {
        "status": status,
        "concept_drift": status == CONCEPT_DRIFT,
        "reasons": reasons,
        "notes": notes,
        "n_labels": n,
        "min_labels": thresholds.min_labels,
        "class_counts": counts,
        "accuracy": accuracy,
        "roc_auc": roc_auc,
        "champion_accuracy": champion_accuracy,
        "champion_roc_auc": champion_roc_auc,
        "accuracy_drop": accuracy_drop,
        "roc_auc_drop": roc_auc_drop,
    }
