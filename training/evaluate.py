"""Score a model on held-out data: the metrics every stage and the gate compare.

`compute_metrics` is pure (labels + probabilities in, floats out) so the
validation score in training, the test score of a run and the gate's
re-scoring of the champion are the same numbers computed the same way.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.calibration import CalibrationDisplay

from core.usecases import DEFAULT_USE_CASE
from training import mlflow_utils
from training.data import feature_frame, labels, load_features, split_frames

log = logging.getLogger(__name__)

METRIC_NAMES = (
    "accuracy",
    "balanced_accuracy",
    "roc_auc",
    "f1",
    "precision",
    "recall",
    "log_loss",
    "brier",
    "ece",
)
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "ece"})
# Metrics of the predicted label (`proba >= threshold`): they depend on the decision threshold.
THRESHOLD_METRICS = frozenset({"accuracy", "balanced_accuracy", "f1", "precision", "recall"})
THRESHOLD_OBJECTIVES = ("balanced_accuracy", "f1", "accuracy")
DEFAULT_THRESHOLD = 0.5
# Tag (run and model version) and logged-model metadata key holding a model's threshold.
TAG_THRESHOLD = "decision_threshold"
THRESHOLD_CANDIDATES = 1001
ECE_BINS = 10


def expected_calibration_error(
    y_true: np.ndarray, proba: np.ndarray, n_bins: int = ECE_BINS
) -> float:
    """Weighted gap between predicted P(positive) and the observed positive rate.

    Equal-width bins over [0, 1] of P(positive), binned like sklearn's
    `calibration_curve(strategy="uniform")` (the last bin includes 1.0);
    each bin contributes |mean label - mean probability| weighted by its share
    of rows. 0 is perfectly calibrated.
    """
    if len(proba) == 0:
        return float("nan")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], proba, side="right")
    total = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            total += mask.mean() * abs(float(y_true[mask].mean()) - float(proba[mask].mean()))
    return float(total)


def compute_metrics(
    y_true: np.ndarray | pd.Series | list[int],
    proba: np.ndarray | pd.Series | list[float],
    threshold: float = 0.5,
) -> dict[str, float]:
    """Binary metrics from labels and P(positive).

    Labels are predicted as `proba >= threshold`. roc_auc is NaN when only one
    class is present (it is undefined, and a silent 0.5 would mislead the gate).
    """
    y = np.asarray(y_true, dtype="int64")
    p = np.asarray(proba, dtype="float64")
    if p.ndim == 2:
        p = p[:, 1]
    if y.shape != p.shape:
        raise ValueError(f"y_true has shape {y.shape} but proba has shape {p.shape}")
    if len(y) == 0:
        raise ValueError("cannot compute metrics on 0 rows")
    if not set(np.unique(y)) <= {0, 1}:
        raise ValueError(f"y_true must be 0/1, got values {sorted(set(np.unique(y)))[:5]}")
    if np.isnan(p).any() or p.min() < 0 or p.max() > 1:
        raise ValueError("proba must be probabilities in [0, 1] without NaN")
    pred = (p >= threshold).astype("int64")
    both_classes = len(np.unique(y)) == 2
    return {
        "accuracy": float(skm.accuracy_score(y, pred)),
        "balanced_accuracy": _balanced_accuracy(y, pred) if both_classes else math.nan,
        "roc_auc": float(skm.roc_auc_score(y, p)) if both_classes else math.nan,
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "log_loss": float(skm.log_loss(y, p, labels=[0, 1])),
        "brier": float(skm.brier_score_loss(y, p, pos_label=1)),
        "ece": expected_calibration_error(y, p),
    }


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean of the recall of each class (both classes present)."""
    return float((np.mean(pred[y == 1] == 1) + np.mean(pred[y == 0] == 0)) / 2)


def choose_threshold(
    y_true: np.ndarray | pd.Series | list[int],
    proba: np.ndarray | pd.Series | list[float],
    objective: str = "balanced_accuracy",
) -> float:
    """The decision threshold on P(positive) that maximises `objective` on these rows.

    Meant for the validation split: the label a model serves is `proba >= threshold`,
    and with skewed classes 0.5 can call most rows one class. Candidates are
    0.5 and up to THRESHOLD_CANDIDATES quantiles of the scores; ties go to the
    candidate closest to 0.5. With a single class present there is nothing to
    choose and 0.5 is returned.
    """
    if objective not in THRESHOLD_OBJECTIVES:
        raise ValueError(f"threshold objective {objective!r} is not one of {THRESHOLD_OBJECTIVES}")
    y = np.asarray(y_true, dtype="int64")
    p = np.asarray(proba, dtype="float64")
    if len(y) == 0 or len(np.unique(y)) < 2:
        return DEFAULT_THRESHOLD
    candidates = np.unique(
        np.concatenate(
            [[DEFAULT_THRESHOLD], np.quantile(p, np.linspace(0.0, 1.0, THRESHOLD_CANDIDATES))]
        )
    )
    positives = y == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    # Counts for every candidate at once: rows with p >= t are predicted positive.
    pos_sorted = np.sort(p[positives])
    neg_sorted = np.sort(p[~positives])
    tp = n_pos - np.searchsorted(pos_sorted, candidates, side="left")
    fp = n_neg - np.searchsorted(neg_sorted, candidates, side="left")
    fn, tn = n_pos - tp, n_neg - fp
    if objective == "balanced_accuracy":
        score = (tp / n_pos + tn / n_neg) / 2
    elif objective == "f1":
        denominator = 2 * tp + fp + fn
        score = np.divide(2 * tp, denominator, out=np.zeros(len(candidates)), where=denominator > 0)
    else:
        score = (tp + tn) / len(y)
    best = score.max()
    tied = candidates[np.isclose(score, best, rtol=0.0, atol=1e-12)]
    return float(tied[np.argmin(np.abs(tied - DEFAULT_THRESHOLD))])


def score_frame(model: Any, frame: pd.DataFrame, use_case: str = DEFAULT_USE_CASE) -> np.ndarray:
    """P(positive) of a fitted pipeline on the feature columns of `frame`."""
    return np.asarray(model.predict_proba(feature_frame(frame, use_case)))[:, 1]


def plot_evaluation(
    y_true: np.ndarray,
    proba: np.ndarray,
    title: str,
    path: Path,
    threshold: float = DEFAULT_THRESHOLD,
) -> Path:
    """Confusion matrix, ROC, precision-recall and calibration curves in one PNG.

    One figure (not four files) so a run's evaluation reads at a glance; the
    calibration panel's title carries the expected calibration error.
    """
    y = np.asarray(y_true, dtype="int64")
    p = np.asarray(proba, dtype="float64")
    both_classes = len(np.unique(y)) == 2
    fig, axes = plt.subplots(2, 2, figsize=(10, 9))
    ax_cm, ax_roc, ax_pr, ax_cal = axes.ravel()
    try:
        skm.ConfusionMatrixDisplay.from_predictions(
            y, (p >= threshold).astype(int), display_labels=["negative", "positive"], ax=ax_cm
        )
        ax_cm.set_title(f"confusion matrix (threshold {threshold:.3f})")
        if both_classes:
            skm.RocCurveDisplay.from_predictions(y, p, ax=ax_roc)
            skm.PrecisionRecallDisplay.from_predictions(y, p, ax=ax_pr, plot_chance_level=True)
        ax_roc.plot([0, 1], [0, 1], linestyle=":", color="grey")
        ax_roc.set_title("ROC")
        ax_pr.set_title("precision-recall")
        CalibrationDisplay.from_predictions(y, p, n_bins=ECE_BINS, ax=ax_cal)
        ax_cal.set_title(f"calibration (ECE {expected_calibration_error(y, p):.4f})")
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, dpi=90)
    finally:
        plt.close(fig)
    return path


def evaluate_run(
    run_id: str, features_dir: str, *, use_case: str = DEFAULT_USE_CASE
) -> dict[str, float]:
    """Score the run's model on the **test** split and record it on the run.

    Logs `test_*` metrics, `evaluation/test_metrics.json` and
    `evaluation/test_plots.png` to the run; returns the metrics (plain names).
    Threshold metrics are at the run's `decision_threshold` tag (0.5 without one).
    """
    mlflow_utils.configure()
    raw_threshold = mlflow_utils.client().get_run(run_id).data.tags.get(TAG_THRESHOLD)
    threshold = float(raw_threshold) if raw_threshold else DEFAULT_THRESHOLD
    model_uri = mlflow_utils.model_uri_for_run(run_id)
    model = mlflow.sklearn.load_model(model_uri)
    _, _, test = split_frames(load_features(features_dir, use_case))
    y = labels(test, use_case).to_numpy()
    proba = score_frame(model, test, use_case)
    result = compute_metrics(y, proba, threshold)
    mlflow_utils.log_metrics_to_run(run_id, result, prefix="test_")
    mlflow_utils.log_metrics_to_run(run_id, {"n_test": len(test)})
    mlflow_utils.set_run_tags(run_id, {"test_features_dir": str(features_dir)})
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "test_metrics.json"
        report.write_text(
            json.dumps({"n_test": len(test), "decision_threshold": threshold, **result}, indent=2)
        )
        plot = plot_evaluation(
            y, proba, f"run {run_id[:8]} on test", Path(tmp) / "test_plots.png", threshold
        )
        mlflow_client = mlflow_utils.client()
        mlflow_client.log_artifact(run_id, str(report), artifact_path="evaluation")
        mlflow_client.log_artifact(run_id, str(plot), artifact_path="evaluation")
    log.info("run %s test metrics: %s", run_id, result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score a training run on the test split.")
    parser.add_argument("run_id")
    parser.add_argument("--features", required=True, help="Parquet folder written by featurize")
    parser.add_argument("--use-case", default=DEFAULT_USE_CASE, help="a registered use case")
    args = parser.parse_args(argv)
    result = evaluate_run(args.run_id, args.features, use_case=args.use_case)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
