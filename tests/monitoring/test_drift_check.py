"""check_drift on synthetic reviews: in-domain stays quiet, a new domain is caught."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from monitoring.config import CHECK_NAMES, DriftThresholds
from monitoring.drift import (
    REPORT_HTML,
    REPORT_JSON,
    SUMMARY_JSON,
    DriftInputError,
    DriftResult,
    check_drift,
)
from synthetic.reviews import generate_reviews

pytestmark = pytest.mark.slow

Log = Callable[[pd.DataFrame], pd.DataFrame]


@pytest.fixture(scope="module")
def movies_result(
    synthetic_champion, serve_log: Log, thresholds: DriftThresholds, tmp_path_factory
) -> DriftResult:
    _, profile = synthetic_champion
    current = serve_log(generate_reviews(300, seed=11, domain="movies"))
    return check_drift(profile, current, thresholds, tmp_path_factory.mktemp("movies"))


@pytest.fixture(scope="module")
def products_result(
    synthetic_champion, serve_log: Log, thresholds: DriftThresholds, tmp_path_factory
) -> DriftResult:
    _, profile = synthetic_champion
    current = serve_log(generate_reviews(300, seed=12, domain="products"))
    return check_drift(profile, current, thresholds, tmp_path_factory.mktemp("products"))


def test_in_domain_day_is_no_drift(movies_result: DriftResult) -> None:
    assert movies_result.decision == "no_drift"
    assert movies_result.n_current == 300
    assert movies_result.n_reference == 1000
    assert movies_result.metrics["text_domain"]["roc_auc"] < 0.65
    assert not movies_result.checks["text_domain"]["fired"]


def test_new_domain_is_drift_and_says_why(products_result: DriftResult) -> None:
    result = products_result
    assert result.decision == "drift"
    fired = [r["metric"] for r in result.reasons]
    assert "text_domain" in fired
    assert result.metrics["text_domain"]["roc_auc"] > 0.9
    combined = result.metrics["combined"]
    assert combined["score"] >= combined["threshold"] == result.thresholds["combined_threshold"]
    assert result.reasons[0]["metric"] == "combined"
    assert result.warnings == []
    for reason in result.reasons:
        assert set(reason) == {"metric", "value", "threshold", "detail"}
    for reason in result.reasons[1:]:
        assert result.checks[reason["metric"]]["fired"]
    # Products vocabulary is unseen by a movie model: the OOV share jumps.
    oov = result.metrics["descriptors"]["oov_share"]
    assert oov["current_mean"] > oov["reference_mean"] + 0.1


def test_every_check_and_column_is_measured(products_result: DriftResult) -> None:
    metrics = products_result.metrics
    assert list(products_result.checks) == list(CHECK_NAMES)
    for column, values in metrics["features"].items():
        assert values["method"], column
        assert values["psi"] is not None and values["psi"] >= 0.0, column
    assert metrics["prediction"]["psi"] is not None
    assert 0.0 <= metrics["prediction"]["current_positive_rate"] <= 1.0
    assert set(metrics["descriptors"]) >= {"text_length", "oov_share", "lexicon_polarity"}


def test_reports_are_written_and_parse(products_result: DriftResult) -> None:
    html = Path(products_result.report_html)
    report = Path(products_result.report_json)
    assert html.name == REPORT_HTML and report.name == REPORT_JSON
    assert "<html" in html.read_text(encoding="utf-8")[:2000].lower()
    evidently = json.loads(report.read_text())
    assert evidently["metrics"] and evidently["tests"]
    summary = json.loads((report.parent / SUMMARY_JSON).read_text())
    assert summary["decision"] == "drift"
    assert summary == json.loads(json.dumps(products_result.to_dict(), allow_nan=False))


def test_too_few_rows_is_insufficient_data(
    synthetic_champion, serve_log: Log, thresholds: DriftThresholds, tmp_path: Path
) -> None:
    _, profile = synthetic_champion
    # Even a wholly different domain is not an alarm when the day is too small.
    current = serve_log(generate_reviews(thresholds.min_rows - 1, seed=13, domain="products"))
    result = check_drift(profile, current, thresholds, tmp_path)
    assert result.decision == "insufficient_data"
    assert result.reasons == []
    assert result.report_html is None
    assert str(thresholds.min_rows) in result.metrics["insufficient_data"]
    assert json.loads((tmp_path / SUMMARY_JSON).read_text())["decision"] == "insufficient_data"


def test_day_without_scores_skips_prediction_drift(
    synthetic_champion, serve_log: Log, thresholds: DriftThresholds, tmp_path: Path
) -> None:
    _, profile = synthetic_champion
    current = serve_log(generate_reviews(200, seed=14, domain="products")).drop(columns=["score"])
    result = check_drift(profile, current, thresholds, tmp_path)
    assert result.metrics["prediction"] is None
    assert result.checks["prediction_drift"]["fired"] is False
    assert "skipped" in result.checks["prediction_drift"]["detail"]
    assert result.decision == "drift"  # the text still gives the new domain away


def test_missing_feature_columns_are_named(
    synthetic_champion, serve_log: Log, thresholds: DriftThresholds, tmp_path: Path
) -> None:
    _, profile = synthetic_champion
    current = serve_log(generate_reviews(100, seed=15)).drop(columns=["n_words"])
    with pytest.raises(DriftInputError, match="n_words"):
        check_drift(profile, current, thresholds, tmp_path)


def test_to_dict_has_no_nan() -> None:
    result = DriftResult("no_drift", [], {"x": float("nan"), "y": [1.0]}, 1, 1)
    as_dict = result.to_dict()
    assert as_dict["metrics"]["x"] is None
    assert not any(isinstance(v, float) and math.isnan(v) for v in as_dict["metrics"].values())
