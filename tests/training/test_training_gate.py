"""The promotion gate as a pure function: every metric, every segment, the primary's minimum.

Each test builds the two models' scores as numbers and asserts the decision: a test here
fails when the gate promotes what it should hold back, or holds back what it should promote.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from core.usecases import get_use_case
from training.evaluate import choose_threshold, compute_metrics
from training.promote import (
    GATE_CONFIG,
    GatePolicy,
    GatePolicyError,
    LivePolicy,
    MetricRule,
    Scores,
    SegmentRule,
    decide_promotion,
    load_gate_policy,
    policy_from_dict,
    report_tag,
    score_rows,
)

POLICY = GatePolicy(
    metrics=(
        MetricRule("roc_auc", True, 0.0, 0.005),
        MetricRule("balanced_accuracy", True, 0.01, 0.02),
        MetricRule("log_loss", False, 0.02, 0.03),
    ),
    primary_metric="roc_auc",
    min_improvement=0.0,
    segments=SegmentRule(column="source", min_rows=100),
)


def m(auc: float, bacc: float = 0.85, loss: float = 0.30) -> dict[str, float]:
    return {"roc_auc": auc, "balanced_accuracy": bacc, "log_loss": loss}


def scores(overall: dict[str, float], **segments: tuple[int, dict[str, float]]) -> Scores:
    return Scores(
        overall=overall,
        segments={name: s for name, (_, s) in segments.items()},
        rows={name: n for name, (n, _) in segments.items()},
    )


def failed(decision) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return {(c["scope"], c["metric"]) for c in decision.failures}


def test_no_champion_promotes_and_says_so() -> None:
    decision = decide_promotion(m(0.61), None, POLICY)
    assert decision.promote
    assert "no champion" in decision.reason
    assert decision.champion_value is None and decision.delta is None


def test_better_auc_but_worse_balanced_accuracy_is_held_back() -> None:
    # The case: ROC-AUC 0.976 vs 0.947, balanced accuracy 0.734 vs 0.864.
    decision = decide_promotion(m(0.976, bacc=0.734), m(0.947, bacc=0.864), POLICY)
    assert not decision.promote
    assert failed(decision) == {("overall", "balanced_accuracy")}
    assert decision.reason.startswith("held back")
    assert "balanced_accuracy on overall 0.734000 vs champion 0.864000" in decision.reason
    assert decision.delta == pytest.approx(0.029)


def test_better_auc_but_worse_calibration_is_held_back() -> None:
    decision = decide_promotion(m(0.95, loss=0.40), m(0.94, loss=0.30), POLICY)
    assert not decision.promote
    assert failed(decision) == {("overall", "log_loss")}


def test_better_overall_but_worse_on_one_segment_is_held_back() -> None:
    challenger = scores(
        m(0.95, bacc=0.88),
        imdb=(400, m(0.97, bacc=0.92)),
        products=(150, m(0.80, bacc=0.70)),
    )
    champion = scores(
        m(0.93, bacc=0.86),
        imdb=(400, m(0.94, bacc=0.88)),
        products=(150, m(0.86, bacc=0.78)),
    )
    decision = decide_promotion(challenger, champion, POLICY)
    assert not decision.promote
    assert failed(decision) == {
        ("segment products", "roc_auc"),
        ("segment products", "balanced_accuracy"),
    }
    assert "segment products" in decision.reason


def test_better_everywhere_is_promoted() -> None:
    challenger = scores(
        m(0.95, bacc=0.88, loss=0.25),
        imdb=(400, m(0.96, bacc=0.90, loss=0.24)),
        products=(150, m(0.90, bacc=0.82, loss=0.30)),
    )
    champion = scores(
        m(0.93, bacc=0.86, loss=0.28),
        imdb=(400, m(0.94, bacc=0.88, loss=0.27)),
        products=(150, m(0.88, bacc=0.80, loss=0.33)),
    )
    decision = decide_promotion(challenger, champion, POLICY)
    assert decision.promote, decision.reason
    assert decision.reason.startswith("promoted")
    assert "2 segment(s) by 'source' judged" in decision.reason
    # 3 metrics overall + 3 per segment, every one compared and recorded.
    assert len(decision.checks) == 9
    assert {c["verdict"] for c in decision.checks} == {"ok"}


def test_a_small_segment_is_reported_not_judged() -> None:
    challenger = scores(m(0.95), imdb=(400, m(0.96)), kindle=(30, m(0.50, bacc=0.40)))
    champion = scores(m(0.93), imdb=(400, m(0.94)), kindle=(30, m(0.90, bacc=0.85)))
    decision = decide_promotion(challenger, champion, POLICY)
    assert decision.promote, decision.reason
    assert decision.small_segments == {"kindle": 30}
    assert "kindle (30)" in decision.reason and "reported only" in decision.reason
    # The same rows with min_rows 30 are judged, and the loss on kindle holds the model back.
    strict = GatePolicy(metrics=POLICY.metrics, segments=SegmentRule(column="source", min_rows=30))
    assert not decide_promotion(challenger, champion, strict).promote


@pytest.mark.parametrize(
    ("challenger_bacc", "promote"),
    [(0.85, True), (0.84, True), (0.8399, False)],
)
def test_threshold_metric_within_tolerance_promotes(challenger_bacc: float, promote: bool) -> None:
    decision = decide_promotion(m(0.94, bacc=challenger_bacc), m(0.93, bacc=0.85), POLICY)
    assert decision.promote is promote


@pytest.mark.parametrize(
    ("challenger_auc", "promote"),
    [(0.92, True), (0.9199999, False), (0.9200001, True)],
)
def test_within_tolerance_promotes_only_if_primary_improves_by_its_minimum(
    challenger_auc: float, promote: bool
) -> None:
    policy = GatePolicy(metrics=POLICY.metrics, min_improvement=0.02)
    # Every other metric is within tolerance; only the primary's gain decides.
    decision = decide_promotion(m(challenger_auc, bacc=0.845), m(0.90), policy)
    assert decision.promote is promote
    if not promote:
        assert failed(decision) == {("overall", "roc_auc")}
        assert "min_improvement 0.02" in decision.reason


def test_tie_promotes_when_min_improvement_is_zero_and_is_held_when_one_is_required() -> None:
    assert decide_promotion(m(0.9), m(0.9), POLICY).promote
    required = GatePolicy(metrics=POLICY.metrics, min_improvement=0.001)
    assert not decide_promotion(m(0.9), m(0.9), required).promote


def test_negative_min_improvement_is_capped_by_the_primary_tolerance() -> None:
    policy = GatePolicy(metrics=(MetricRule("roc_auc", True, 0.01),), min_improvement=-0.05)
    assert not decide_promotion(m(0.88), m(0.90), policy).promote
    assert decide_promotion(m(0.895), m(0.90), policy).promote


def test_nan_values() -> None:
    nan_challenger = decide_promotion(m(math.nan), m(0.9), POLICY)
    nan_champion = decide_promotion(m(0.6), m(math.nan), POLICY)
    assert not nan_challenger.promote and "NaN" in nan_challenger.reason
    assert nan_champion.promote and "NaN" in nan_champion.reason
    # A one-class segment: AUC undefined there, reported as such, not a regression.
    challenger = scores(m(0.95), imdb=(200, m(math.nan)))
    champion = scores(m(0.93), imdb=(200, m(math.nan)))
    decision = decide_promotion(challenger, champion, POLICY)
    assert decision.promote
    assert ("segment imdb", "roc_auc") in {
        (c["scope"], c["metric"]) for c in decision.checks if c["verdict"] == "undefined"
    }


def test_missing_metric_names_what_is_there() -> None:
    with pytest.raises(GatePolicyError, match=r"challenger metrics lack 'roc_auc'.*accuracy"):
        decide_promotion({"accuracy": 0.9}, m(0.9), POLICY)
    with pytest.raises(GatePolicyError, match="champion metrics lack"):
        decide_promotion(m(0.9), {"roc_auc": 0.9}, POLICY)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"metrics": {"auc": {}}}, "not a computed metric"),
        ({"metrics": {"roc_auc": {"tolerance": -0.01}}}, "tolerance must be >= 0"),
        ({"metrics": {"roc_auc": {"direction": "lower"}}}, "must be 'higher'"),
        ({"metrics": {"log_loss": {"direction": "higher"}}}, "must be 'lower'"),
        ({"metrics": {"roc_auc": {}}, "primary": {"metric": "f1"}}, "must be one of the gated"),
        ({"metrics": {"roc_auc": {}}, "primary": {"min_improvement": math.inf}}, "finite"),
        ({"metrics": {"roc_auc": {}}, "tolerence": 0.01}, r"unknown gate keys \['tolerence'\]"),
        ({"metrics": {"roc_auc": {}}, "segments": {"min_rows": 0}}, "min_rows must be >= 1"),
        ({"metrics": {"roc_auc": {}}, "threshold": {"objective": "auc"}}, "objective"),
        ({"primary_metric": "roc_auc"}, "unknown gate keys"),
    ],
)
def test_policy_validation(data: dict[str, object], message: str) -> None:
    with pytest.raises(GatePolicyError, match=message):
        policy_from_dict(data)


def test_shipped_gate_configs_name_metrics_and_segments() -> None:
    raw = yaml.safe_load(GATE_CONFIG.read_text())
    assert {"metrics", "segments", "primary", "threshold"} <= set(raw)
    policy = load_gate_policy(GATE_CONFIG)
    names = {rule.name for rule in policy.metrics}
    # Ranking, a threshold metric and calibration are all gated.
    assert {"roc_auc", "balanced_accuracy", "log_loss"} <= names
    assert policy.primary_metric == "roc_auc"
    assert policy.segments.column == "source"
    credit = load_gate_policy(get_use_case("credit").config_path("gate"))
    assert credit.segments.column == "age" and credit.segments.bins is not None


def test_gate_config_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text("metrics: {roc_auc: {}}\ntolerence: 0.01\n")
    with pytest.raises(GatePolicyError, match=r"gate.yaml: unknown gate keys \['tolerence'\]"):
        load_gate_policy(path)


def test_score_rows_uses_the_models_threshold_and_cuts_segments() -> None:
    y = np.array([0, 0, 1, 1, 0, 1, 1, 1])
    p = np.array([0.1, 0.35, 0.4, 0.9, 0.2, 0.6, 0.3, 0.8])
    source = pd.Series(["a", "a", "a", "a", "b", "b", "b", "b"])
    at_half = score_rows(y, p, source, 0.5)
    at_low = score_rows(y, p, source, 0.3)
    assert at_half.overall == compute_metrics(y, p, 0.5)
    assert at_low.overall["balanced_accuracy"] > at_half.overall["balanced_accuracy"]
    assert at_low.rows == {"a": 4, "b": 4}
    assert at_low.segments["b"] == compute_metrics(y[4:], p[4:], 0.3)
    assert at_half.overall["roc_auc"] == at_low.overall["roc_auc"]


def test_segment_bins_cut_a_numeric_column() -> None:
    rule = SegmentRule(column="age", bins=(0, 30, 50, 200), min_rows=1)
    cut = rule.labels_of(pd.DataFrame({"age": [22, 30, 49, 70, None]}))
    assert cut is not None
    assert cut.tolist() == ["[0, 30)", "[30, 50)", "[30, 50)", "[50, 200)", "out_of_bins"]
    assert rule.labels_of(pd.DataFrame({"other": [1]})) is None


def test_report_tag_holds_every_number_and_stays_bounded() -> None:
    challenger = scores(m(0.95), **{f"s{i}": (500, m(0.96)) for i in range(3)})
    champion = scores(m(0.93), **{f"s{i}": (500, m(0.94)) for i in range(3)})
    decision = decide_promotion(challenger, champion, POLICY)
    report = json.loads(report_tag(decision, {"challenger": 0.41, "champion": 0.5}))
    assert report["thresholds"] == {"challenger": 0.41, "champion": 0.5}
    assert len(report["checks"]) == 12
    row = dict(zip(report["columns"], report["checks"][0], strict=True))
    assert row["scope"] == "overall" and row["challenger"] == 0.95 and row["champion"] == 0.93
    many_c = scores(m(0.95), **{f"segment-{i:03d}": (500, m(0.96)) for i in range(200)})
    many_o = scores(m(0.93), **{f"segment-{i:03d}": (500, m(0.94)) for i in range(200)})
    big = report_tag(decide_promotion(many_c, many_o, POLICY), {"challenger": 0.5})
    assert len(big) <= 4900
    assert json.loads(big)["truncated"] == 600


def test_choose_threshold_maximises_the_objective_on_skewed_classes() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(4000) < 0.9).astype(int)  # 90 % positive, like the product reviews
    p = np.clip(0.75 + 0.2 * (y - 0.5) + rng.normal(0, 0.12, len(y)), 0, 1)
    t = choose_threshold(y, p, "balanced_accuracy")
    assert t > 0.6
    chosen = compute_metrics(y, p, t)["balanced_accuracy"]
    assert chosen > compute_metrics(y, p, 0.5)["balanced_accuracy"] + 0.1
    for other in np.linspace(0.05, 0.95, 19):
        assert chosen >= compute_metrics(y, p, float(other))["balanced_accuracy"] - 1e-9
    assert choose_threshold([1, 1, 1], [0.2, 0.3, 0.9]) == 0.5
    with pytest.raises(ValueError, match="objective"):
        choose_threshold(y, p, "roc_auc")


unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@given(champion=unit, challenger=unit, bump=unit, bacc=unit, min_improvement=unit)
def test_a_better_challenger_never_loses_where_a_worse_one_won(
    champion: float, challenger: float, bump: float, bacc: float, min_improvement: float
) -> None:
    policy = GatePolicy(metrics=POLICY.metrics, min_improvement=min_improvement - 0.5)
    base = decide_promotion(m(challenger, bacc=bacc), m(champion), policy)
    better = decide_promotion(m(challenger + bump, bacc=bacc), m(champion), policy)
    if base.promote:
        assert better.promote
    delta = challenger - champion
    expected = delta >= max(0.0, policy.min_improvement) - 1e-12 and bacc >= 0.84 - 1e-12
    assert base.promote == expected


# ---- live labelled traffic ---------------------------------------------------------------

LIVE_POLICY = GatePolicy(
    metrics=POLICY.metrics,
    segments=POLICY.segments,
    live=LivePolicy(
        metrics=(
            MetricRule("roc_auc", True, 0.01),
            MetricRule("balanced_accuracy", True, 0.02),
            MetricRule("log_loss", False, 0.03),
        ),
        min_labelled_rows=200,
    ),
)


def live(rows: int, champion: dict[str, float], challenger: dict[str, float]) -> dict:
    """What serving.live_compare.live_comparison returns, for `rows` labelled shadow rows."""
    return {
        "rows": rows + 10,
        "labelled_rows": rows,
        "champion_version": "1",
        "challenger_version": "2",
        "champion": champion,
        "challenger": challenger,
    }


def test_wins_offline_but_loses_on_live_traffic_is_held_back() -> None:
    evidence = live(400, m(0.90, bacc=0.82), m(0.86, bacc=0.80))
    decision = decide_promotion(m(0.95), m(0.90), LIVE_POLICY, evidence)
    assert not decision.promote
    assert failed(decision) == {("live", "roc_auc")}
    assert decision.reason.startswith("held back on live traffic")
    assert "roc_auc on live 0.860000 vs champion 0.900000" in decision.reason
    assert decision.live["status"] == "judged" and decision.live["labelled_rows"] == 400
    # The offline verdicts are still recorded next to the live ones.
    assert [c["verdict"] for c in decision.checks if c["scope"] == "overall"] == ["ok"] * 3


def test_wins_offline_and_on_live_traffic_is_promoted() -> None:
    evidence = live(400, m(0.90, bacc=0.80, loss=0.35), m(0.905, bacc=0.81, loss=0.34))
    decision = decide_promotion(m(0.95), m(0.90), LIVE_POLICY, evidence)
    assert decision.promote
    assert "live traffic agrees" in decision.reason
    live_checks = [c for c in decision.checks if c["scope"] == "live"]
    assert [c["metric"] for c in live_checks] == ["roc_auc", "balanced_accuracy", "log_loss"]
    assert all(c["verdict"] == "ok" for c in live_checks)


def test_too_few_labelled_live_rows_decides_on_offline_metrics_alone() -> None:
    # The same live figures as the held-back case, on 199 rows: not judged.
    evidence = live(199, m(0.90), m(0.70))
    decision = decide_promotion(m(0.95), m(0.90), LIVE_POLICY, evidence)
    assert decision.promote
    assert decision.live["status"] == "too_few_rows"
    assert "199 labelled shadow-scored row(s)" in decision.reason
    assert "decided on offline metrics alone" in decision.reason
    assert not [c for c in decision.checks if c["scope"] == "live"]
    # ... and an offline loser stays held back whatever the live rows say.
    held = decide_promotion(m(0.85), m(0.90), LIVE_POLICY, live(10, m(0.7), m(0.9)))
    assert not held.promote and held.live["status"] == "too_few_rows"


def test_live_within_tolerance_promotes_and_undefined_live_metric_is_not_judged() -> None:
    # ROC-AUC 0.009 worse live (tolerance 0.01); balanced accuracy undefined (one class).
    evidence = live(
        300,
        {"roc_auc": 0.90, "balanced_accuracy": None, "log_loss": 0.3},
        {"roc_auc": 0.891, "balanced_accuracy": None, "log_loss": 0.3},
    )
    decision = decide_promotion(m(0.95), m(0.90), LIVE_POLICY, evidence)
    assert decision.promote
    verdicts = {c["metric"]: c["verdict"] for c in decision.checks if c["scope"] == "live"}
    assert verdicts == {"roc_auc": "ok", "balanced_accuracy": "undefined", "log_loss": "ok"}


def test_an_unreadable_log_or_no_live_block_decides_offline_and_says_why() -> None:
    decision = decide_promotion(m(0.95), m(0.90), LIVE_POLICY, {"error": "prediction log gone"})
    assert decision.promote and decision.live["status"] == "unavailable"
    assert "prediction log gone" in decision.reason
    assert decide_promotion(m(0.95), m(0.90), POLICY, None).live == {"status": "not_configured"}
    assert decide_promotion(m(0.95), None, LIVE_POLICY).live == {"status": "no_comparison"}


def test_live_block_parses_and_is_validated() -> None:
    policy = load_gate_policy(GATE_CONFIG)
    assert policy.live is not None and policy.live.min_labelled_rows >= 1
    assert {r.name for r in policy.live.metrics} >= {"roc_auc", "balanced_accuracy"}
    assert policy.as_dict()["live"]["min_labelled_rows"] == policy.live.min_labelled_rows
    base = yaml.safe_load(GATE_CONFIG.read_text())
    for bad, message in (
        ({"metrics": {"ece": {}}}, "not computed on live traffic"),
        ({"metrics": {"roc_auc": {}}, "min_labelled_rows": 0}, "min_labelled_rows must be >= 1"),
        ({"metrics": {"roc_auc": {}}, "window": 3}, "unknown live keys"),
        ({"metrics": {}}, "live.metrics must map"),
    ):
        with pytest.raises(GatePolicyError, match=message):
            policy_from_dict({**base, "live": bad})
