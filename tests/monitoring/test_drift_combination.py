"""The day's decision from the checks' evidence: combined z, votes, and warnings never dropped."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitoring.config import CHECK_NAMES, DriftThresholds, load_thresholds
from monitoring.drift import DRIFT, NO_DRIFT, check_drift, combine_checks, decide
from synthetic.reviews import generate_reviews

NULL_MEAN = {c: 0.1 for c in CHECK_NAMES}
NULL_SD = {c: 0.01 for c in CHECK_NAMES}
EQUAL = {c: 1.0 for c in CHECK_NAMES}


def _rule(**changes: object) -> DriftThresholds:
    base = {
        "decision_method": "combined",
        "check_null_mean": NULL_MEAN,
        "check_null_sd": NULL_SD,
        "combine_weights": EQUAL,
        "combined_null_sd": 2.0,
        "z_cap": 4.0,
        "combined_threshold": 3.0,
    }
    return load_thresholds({**base, **changes})


def _checks(z: dict[str, float], fired: tuple[str, ...] = ()) -> dict[str, dict[str, object]]:
    """Checks whose statistics sit `z` null sds above the null mean."""
    return {
        c: {
            "statistic": NULL_MEAN[c] + z.get(c, 0.0) * NULL_SD[c],
            "fired": c in fired,
            "value": round(NULL_MEAN[c] + z.get(c, 0.0) * NULL_SD[c], 6),
            "threshold": 0.3,
            "detail": f"{c} detail",
        }
        for c in CHECK_NAMES
    }


def test_combined_z_is_the_capped_weighted_sum_over_its_spread() -> None:
    rule = _rule()
    out = combine_checks(_checks({"text_domain": 10.0, "feature_drift": 1.0}), rule)
    assert out["z"]["text_domain"] == pytest.approx(4.0)  # capped
    assert out["z"]["feature_drift"] == pytest.approx(1.0)
    assert out["score"] == pytest.approx((4.0 + 1.0) / 2.0)
    assert out["drift"] is False and out["threshold"] == 3.0


def test_a_skipped_check_contributes_nothing() -> None:
    checks = _checks({"prediction_drift": 3.0, "text_domain": 3.0})
    checks["prediction_drift"]["statistic"] = None
    out = combine_checks(checks, _rule())
    assert out["z"]["prediction_drift"] is None
    assert out["score"] == pytest.approx(3.0 / 2.0)


def test_small_moves_of_every_check_add_up_to_drift_though_none_fired() -> None:
    verdict = decide(_checks({c: 1.5 for c in CHECK_NAMES}), _rule())
    assert verdict["decision"] == DRIFT
    assert verdict["combined"]["score"] == pytest.approx(7.5 / 2.0)
    assert verdict["votes"] == 0 and verdict["warnings"] == []
    # Vote counting sees nothing on the same day.
    assert decide(_checks({c: 1.5 for c in CHECK_NAMES}), _rule(decision_method="votes"))[
        "decision"
    ] == (NO_DRIFT)


def test_one_check_alone_is_a_warning_with_its_numbers() -> None:
    """A prior shift: only the score distribution moves, far; the day is not drift."""
    checks = _checks({"prediction_drift": 40.0}, fired=("prediction_drift",))
    verdict = decide(checks, _rule())
    assert verdict["decision"] == NO_DRIFT
    assert verdict["combined"]["z"]["prediction_drift"] == pytest.approx(4.0)
    assert verdict["warnings"] == [
        {
            "metric": "prediction_drift",
            "value": checks["prediction_drift"]["value"],
            "threshold": 0.3,
            "detail": "prediction_drift detail",
        }
    ]


def test_a_drift_day_has_no_warnings() -> None:
    fired = ("text_domain", "prediction_drift")
    verdict = decide(_checks({c: 5.0 for c in CHECK_NAMES}, fired=fired), _rule())
    assert verdict["decision"] == DRIFT and verdict["warnings"] == []


def test_votes_method_keeps_counting_weights() -> None:
    rule = _rule(decision_method="votes")
    assert decide(_checks({}, fired=("text_domain",)), rule)["decision"] == DRIFT  # weight 2
    lone = decide(_checks({}, fired=("feature_psi",)), rule)
    assert lone["decision"] == NO_DRIFT
    assert [w["metric"] for w in lone["warnings"]] == ["feature_psi"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"decision_method": "majority"}, "decision_method"),
        ({"check_null_sd": {"text_domain": 0}}, "check_null_sd"),
        ({"combined_null_sd": 0}, "combined_null_sd"),
        ({"combine_weights": {"feature_psi": -1}}, "combine_weights"),
    ],
)
def test_bad_combination_settings_are_rejected(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _rule(**changes)


def test_prior_shift_day_is_reported_as_a_warning_by_check_drift(
    synthetic_champion, serve_log, tmp_path: Path
) -> None:
    """80 % negative movie reviews (reference: half): the scores move, the text stays in domain."""
    _, profile = synthetic_champion
    thresholds = load_thresholds()
    current = serve_log(generate_reviews(300, seed=22, domain="movies", positive_share=0.2))
    result = check_drift(profile, current, thresholds, tmp_path)
    assert result.checks["prediction_drift"]["fired"]
    assert result.decision == NO_DRIFT
    warned = {w["metric"]: w for w in result.warnings}
    assert "prediction_drift" in warned
    assert warned["prediction_drift"]["value"] == result.checks["prediction_drift"]["value"]
    assert result.metrics["warnings"] == len(result.warnings)
    assert result.to_dict()["warnings"] == result.warnings
