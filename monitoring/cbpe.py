"""Confidence-based performance estimation (CBPE): model quality before labels arrive.

The idea is NannyML's CBPE: if the model's scores are calibrated, a prediction
with score p is right with probability p (when it says positive) or 1 - p
(when it says negative), so the expected confusion matrix of a day, and from
it accuracy, balanced accuracy and F1, follow from the scores alone. The
expected ROC-AUC sweeps the ranking with each row counting p as a positive
and 1 - p as a negative. Scores are first calibrated on the champion's
reference profile (held-out test rows with labels) with isotonic regression,
the same step NannyML takes when the reference shows miscalibration. The
estimate holds under covariate shift (P(y | x) unchanged); a concept shift
is only seen through realised performance, once labels land.

Why not the `nannyml` package: checked with `uv pip compile` against
requirements/dev.lock. Every nannyml release conflicts with the lock:
nannyml >= 0.13 requires lightgbm < 4.6 (the lock pins 4.7.0, a model family
here), 0.12.x pins python-dotenv < 0.22, 0.5.3 - 0.11 pin rich < 13, older
ones scipy < 1.8. Alone with pandas 2.3.3, numpy 2.4.6 and scikit-learn
1.9.1 0.13.1 does resolve, but it pulls in flaml, xgboost and an AWS client
stack for a hundred lines of arithmetic, so the estimator lives here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression

METRICS = ("accuracy", "balanced_accuracy", "f1", "roc_auc")


def _scores(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype="float64").ravel()
    if array.size and (not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1):
        raise ValueError("scores must be finite probabilities within [0, 1]")
    return array


def expected_roc_auc(calibrated: np.ndarray) -> float | None:
    """ROC-AUC expected when row i is positive with probability calibrated[i]."""
    if calibrated.size < 2:
        return None
    order = np.argsort(-calibrated, kind="stable")
    p = calibrated[order]
    # Tied scores move together: one ROC point per distinct score.
    last_of_tie = np.r_[np.diff(p) != 0, True]
    tps = np.cumsum(p)[last_of_tie]
    fps = np.cumsum(1.0 - p)[last_of_tie]
    if tps[-1] <= 0 or fps[-1] <= 0:
        return None
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    return float(np.trapezoid(tpr, fpr))


@dataclass
class CBPE:
    """Fit on reference scores + labels, then `estimate(scores)` for any day."""

    decision_threshold: float = 0.5
    calibrator: IsotonicRegression | None = None

    def fit(
        self, reference_scores: Sequence[float] | np.ndarray, reference_labels: Sequence[int] | None
    ) -> CBPE:
        """Isotonic calibration of score -> P(label 1) on the reference; none without labels."""
        scores = _scores(reference_scores)
        if reference_labels is None:
            self.calibrator = None
            return self
        labels = np.asarray(reference_labels, dtype="float64").ravel()
        keep = np.isfinite(labels)
        if keep.sum() < 2 or len(np.unique(labels[keep])) < 2:
            self.calibrator = None
            return self
        self.calibrator = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        self.calibrator.fit(scores[keep], labels[keep])
        return self

    def calibrate(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        array = _scores(scores)
        if self.calibrator is None or not array.size:
            return array
        return np.clip(self.calibrator.predict(array), 0.0, 1.0)

    def estimate(self, scores: Sequence[float] | np.ndarray) -> dict[str, float | None]:
        """Expected accuracy, balanced accuracy, F1 and ROC-AUC of rows with these scores."""
        raw = _scores(scores)
        if not raw.size:
            return dict.fromkeys(METRICS)
        p = self.calibrate(raw)
        predicted = raw >= self.decision_threshold
        tp = float(p[predicted].sum())
        fp = float((1.0 - p[predicted]).sum())
        fn = float(p[~predicted].sum())
        tn = float((1.0 - p[~predicted]).sum())
        n = tp + fp + fn + tn
        tpr = tp / (tp + fn) if tp + fn > 0 else None
        tnr = tn / (tn + fp) if tn + fp > 0 else None
        return {
            "accuracy": (tp + tn) / n,
            "balanced_accuracy": (tpr + tnr) / 2 if tpr is not None and tnr is not None else None,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else None,
            "roc_auc": expected_roc_auc(p),
        }
