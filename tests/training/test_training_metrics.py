"""compute_metrics against scikit-learn's own functions and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from training.evaluate import METRIC_NAMES, compute_metrics, expected_calibration_error

Y = np.array([0, 0, 1, 1, 1, 0, 1, 0])
P = np.array([0.05, 0.62, 0.55, 0.81, 0.12, 0.18, 0.97, 0.33])


def test_metrics_match_sklearn() -> None:
    result = compute_metrics(Y, P)
    pred = (P >= 0.5).astype(int)
    assert set(result) == set(METRIC_NAMES)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(Y, pred))
    assert result["roc_auc"] == pytest.approx(skm.roc_auc_score(Y, P))
    assert result["f1"] == pytest.approx(skm.f1_score(Y, pred))
    assert result["precision"] == pytest.approx(skm.precision_score(Y, pred))
    assert result["recall"] == pytest.approx(skm.recall_score(Y, pred))
    assert result["log_loss"] == pytest.approx(skm.log_loss(Y, P))
    assert result["brier"] == pytest.approx(skm.brier_score_loss(Y, P))


def test_known_values_of_the_fixed_example() -> None:
    result = compute_metrics(Y, P)
    # predictions 0 1 1 1 0 0 1 0 against labels 0 0 1 1 1 0 1 0: one FP (0.62), one FN (0.12)
    assert result["accuracy"] == pytest.approx(6 / 8)
    assert result["precision"] == pytest.approx(3 / 4)
    assert result["recall"] == pytest.approx(3 / 4)
    # 16 positive/negative pairs; misordered: 0.55<0.62, 0.12<0.62, 0.12<0.18, 0.12<0.33
    assert result["roc_auc"] == pytest.approx(12 / 16)


def test_ece_by_hand() -> None:
    y = np.array([1, 0, 0, 1, 1, 1])
    p = np.array([0.12, 0.18, 0.45, 0.55, 0.85, 0.95])
    # bins: [0.1,0.2) holds 0.12 and 0.18 -> |0.5 - 0.15| * 2/6; the others one row each
    expected = (0.35 * 2 + 0.45 + 0.45 + 0.15 + 0.05) / 6
    assert expected_calibration_error(y, p) == pytest.approx(expected)
    assert compute_metrics(y, p)["ece"] == pytest.approx(expected)


def test_ece_agrees_with_sklearn_calibration_curve() -> None:
    rng = np.random.default_rng(3)
    p = rng.random(400)
    y = (rng.random(400) < p**1.5).astype(int)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], p, side="right"))
    counts = counts[counts > 0]
    expected = float(np.sum(counts / len(p) * np.abs(prob_true - prob_pred)))
    assert expected_calibration_error(y, p) == pytest.approx(expected)


def test_perfectly_calibrated_extremes_have_zero_ece() -> None:
    y = np.array([0, 0, 1, 1])
    assert expected_calibration_error(y, np.array([0.0, 0.0, 1.0, 1.0])) == 0.0


def test_threshold_moves_the_labels_not_the_ranking() -> None:
    low = compute_metrics(Y, P, threshold=0.1)
    default = compute_metrics(Y, P)
    assert low["recall"] == 1.0
    assert low["precision"] < default["precision"]
    assert low["roc_auc"] == default["roc_auc"]


def test_two_column_probabilities_use_the_positive_column() -> None:
    two = np.column_stack([1 - P, P])
    assert compute_metrics(Y, two) == compute_metrics(Y, P)


def test_single_class_gives_nan_auc_not_an_error() -> None:
    result = compute_metrics([1, 1, 1], [0.9, 0.8, 0.4])
    assert math.isnan(result["roc_auc"])
    assert result["accuracy"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 1], [0.5], "shape"),
        ([], [], "0 rows"),
        ([0, 2], [0.1, 0.9], "0/1"),
        ([0, 1], [0.1, 1.2], r"\[0, 1\]"),
        ([0, 1], [0.1, math.nan], "NaN"),
    ],
)
def test_bad_inputs_are_refused(y: list[int], p: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_metrics(y, p)
