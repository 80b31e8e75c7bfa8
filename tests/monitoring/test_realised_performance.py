from __future__ import annotations

import numpy as np
import pytest

from monitoring.config import DriftThresholds
from monitoring.performance import realised_performance

CHAMPION = {"accuracy": 0.90, "roc_auc": 0.95}


def _good_window(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores from a model about as good as the champion."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    scores = np.clip(np.where(labels == 1, 0.8, 0.2) + rng.normal(0, 0.2, size=n), 0, 1)
    return labels, scores


def test_window_as_good_as_the_champion_is_ok(thresholds: DriftThresholds) -> None:
    labels, scores = _good_window(1000)
    result = realised_performance(labels, scores, CHAMPION, thresholds)
    assert result["status"] == "ok"
    assert result["concept_drift"] is False
    assert result["accuracy"] > 0.88
    assert result["accuracy_drop"] == pytest.approx(CHAMPION["accuracy"] - result["accuracy"])


def test_real_drop_is_concept_drift_with_reasons(thresholds: DriftThresholds) -> None:
    labels, scores = _good_window(1000, seed=1)
    flip = np.random.default_rng(2).random(1000) < 0.3  # 30% of labels now disagree
    result = realised_performance(np.where(flip, 1 - labels, labels), scores, CHAMPION, thresholds)
    assert result["status"] == "concept_drift"
    assert result["concept_drift"] is True
    fired = {r["metric"] for r in result["reasons"]}
    assert fired == {"accuracy_drop", "roc_auc_drop"}
    assert result["accuracy_drop"] > thresholds.max_accuracy_drop


def test_one_class_window_reports_undefined_roc_auc(thresholds: DriftThresholds) -> None:
    n = thresholds.min_labels + 50
    scores = np.random.default_rng(3).uniform(0.6, 1.0, size=n)
    result = realised_performance(np.ones(n, dtype=int), scores, CHAMPION, thresholds)
    assert result["roc_auc"] is None
    assert result["roc_auc_drop"] is None
    assert any("only class 1" in note for note in result["notes"])
    assert result["accuracy"] == 1.0
    assert result["status"] == "ok"


def test_too_few_labels_decides_nothing(thresholds: DriftThresholds) -> None:
    labels, scores = _good_window(thresholds.min_labels - 1, seed=4)
    result = realised_performance(1 - labels, scores, CHAMPION, thresholds)
    assert result["status"] == "insufficient_labels"
    assert result["concept_drift"] is False
    assert result["accuracy"] < 0.5  # measured, but no decision taken on it


def test_missing_labels_are_ignored_and_bad_labels_raise(thresholds: DriftThresholds) -> None:
    labels, scores = _good_window(400, seed=5)
    partial = labels.astype(object)
    partial[::2] = None
    result = realised_performance(partial, scores, CHAMPION, thresholds)
    assert result["n_labels"] == 200
    with pytest.raises(ValueError, match="0/1"):
        realised_performance(np.r_[labels[:-1], 2], scores, CHAMPION, thresholds)
    with pytest.raises(ValueError, match="0/1"):
        realised_performance(["positive"] * 400, scores, CHAMPION, thresholds)
    with pytest.raises(ValueError, match="same length"):
        realised_performance(labels[:10], scores, CHAMPION, thresholds)


def test_prefixed_champion_metrics_and_missing_ones(thresholds: DriftThresholds) -> None:
    labels, scores = _good_window(500, seed=6)
    result = realised_performance(labels, scores, {"test_accuracy": 0.9}, thresholds)
    assert result["champion_accuracy"] == 0.9
    assert result["roc_auc_drop"] is None
    assert any("roc_auc missing" in note for note in result["notes"])
