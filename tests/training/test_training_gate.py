"""The promotion gate as a pure function: decisions, boundaries, policy validation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from training.promote import (
    GATE_CONFIG,
    GatePolicy,
    GatePolicyError,
    decide_promotion,
    load_gate_policy,
)

DEFAULT = GatePolicy()


def auc(value: float) -> dict[str, float]:
    return {"roc_auc": value, "accuracy": 0.5}


def test_no_champion_promotes() -> None:
    decision = decide_promotion(auc(0.61), None, DEFAULT)
    assert decision.promote
    assert "no champion" in decision.reason
    assert decision.champion_value is None and decision.delta is None
    assert decision.challenger_value == 0.61


def test_better_challenger_promotes_worse_one_is_kept() -> None:
    better = decide_promotion(auc(0.93), auc(0.91), DEFAULT)
    worse = decide_promotion(auc(0.90), auc(0.91), DEFAULT)
    assert better.promote and better.delta == pytest.approx(0.02)
    assert not worse.promote and worse.delta == pytest.approx(-0.01)
    assert "tolerance" in worse.reason
    assert worse.champion_value == 0.91


def test_tie_promotes_when_min_improvement_is_zero() -> None:
    decision = decide_promotion(auc(0.9), auc(0.9), DEFAULT)
    assert decision.promote
    assert "ties" in decision.reason


def test_tie_is_kept_when_an_improvement_is_required() -> None:
    decision = decide_promotion(auc(0.9), auc(0.9), GatePolicy(min_improvement=0.001))
    assert not decision.promote
    assert "min_improvement" in decision.reason


@pytest.mark.parametrize(
    ("challenger", "promote"),
    [(0.89, True), (0.8899999, False), (0.8900001, True)],
)
def test_tolerance_boundary(challenger: float, promote: bool) -> None:
    # 0.89 - 0.90 is -0.010000000000000009 in floats: exactly on the boundary it still passes.
    policy = GatePolicy(tolerance=0.01, min_improvement=-1.0)
    assert decide_promotion(auc(challenger), auc(0.90), policy).promote is promote


@pytest.mark.parametrize(
    ("challenger", "promote"),
    [(0.92, True), (0.9199999, False), (0.9200001, True)],
)
def test_min_improvement_boundary(challenger: float, promote: bool) -> None:
    policy = GatePolicy(min_improvement=0.02)
    assert decide_promotion(auc(challenger), auc(0.90), policy).promote is promote


def test_positive_min_improvement_overrides_a_loose_tolerance() -> None:
    policy = GatePolicy(tolerance=0.05, min_improvement=0.01)
    assert policy.bar == 0.01
    slightly_worse = decide_promotion(auc(0.89), auc(0.90), policy)
    assert not slightly_worse.promote
    assert "min_improvement" in slightly_worse.reason


def test_tolerance_caps_a_negative_min_improvement() -> None:
    policy = GatePolicy(tolerance=0.01, min_improvement=-0.05)
    assert policy.bar == -0.01
    decision = decide_promotion(auc(0.88), auc(0.90), policy)
    assert not decision.promote
    assert "tolerance 0.01" in decision.reason
    assert decide_promotion(auc(0.895), auc(0.90), policy).promote


def test_lower_is_better_metric_flips_the_sign() -> None:
    policy = GatePolicy(primary_metric="log_loss", higher_is_better=False)
    lower_loss = decide_promotion({"log_loss": 0.25}, {"log_loss": 0.30}, policy)
    higher_loss = decide_promotion({"log_loss": 0.35}, {"log_loss": 0.30}, policy)
    assert lower_loss.promote and lower_loss.delta == pytest.approx(0.05)
    assert not higher_loss.promote and higher_loss.delta == pytest.approx(-0.05)


def test_nan_values() -> None:
    nan_challenger = decide_promotion(auc(math.nan), auc(0.9), DEFAULT)
    nan_champion = decide_promotion(auc(0.6), auc(math.nan), DEFAULT)
    assert not nan_challenger.promote and "NaN" in nan_challenger.reason
    assert nan_champion.promote and "NaN" in nan_champion.reason


def test_missing_metric_names_what_is_there() -> None:
    with pytest.raises(GatePolicyError, match=r"challenger metrics lack 'roc_auc'.*accuracy"):
        decide_promotion({"accuracy": 0.9}, auc(0.9), DEFAULT)
    with pytest.raises(GatePolicyError, match="champion metrics lack"):
        decide_promotion(auc(0.9), {"f1": 0.9}, DEFAULT)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"primary_metric": "auc"}, "not a computed metric"),
        ({"tolerance": -0.01}, "tolerance must be >= 0"),
        ({"min_improvement": math.inf}, "finite"),
        ({"primary_metric": "brier"}, "higher_is_better must be false"),
        ({"primary_metric": "f1", "higher_is_better": False}, "higher_is_better must be true"),
    ],
)
def test_policy_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(GatePolicyError, match=message):
        GatePolicy(**kwargs)  # type: ignore[arg-type]


def test_shipped_gate_config_loads() -> None:
    policy = load_gate_policy(GATE_CONFIG)
    assert policy.primary_metric == "roc_auc"
    assert policy.higher_is_better is True
    assert policy.bar == 0.0


def test_gate_config_rejects_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text("primary_metric: roc_auc\ntolerence: 0.01\n")
    with pytest.raises(GatePolicyError, match=r"gate.yaml: unknown gate keys \['tolerence'\]"):
        load_gate_policy(path)
    path.write_text("primary_metric: log_loss\n")
    with pytest.raises(GatePolicyError, match="higher_is_better must be false"):
        load_gate_policy(path)


unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@given(champion=unit, challenger=unit, bump=unit, tolerance=unit, min_improvement=unit)
def test_a_better_challenger_never_loses_where_a_worse_one_won(
    champion: float, challenger: float, bump: float, tolerance: float, min_improvement: float
) -> None:
    policy = GatePolicy(tolerance=tolerance, min_improvement=min_improvement - 0.5)
    base = decide_promotion(auc(challenger), auc(champion), policy)
    better = decide_promotion(auc(challenger + bump), auc(champion), policy)
    if base.promote:
        assert better.promote
    assert base.promote == (challenger - champion >= policy.bar - 1e-12)
