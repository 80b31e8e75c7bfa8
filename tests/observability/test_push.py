"""Batch figures reach a real Pushgateway, grouped by job and use case; no gateway, no failure."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from monitoring import pipeline_metrics, push
from tests.observability.tools import http_get, pushgateway

DRIFT_DAY = {
    "decision": "drift",
    "n_current": 400,
    "checks": {
        "text_domain": {"fired": True, "value": 0.93, "threshold": 0.7},
        "feature_psi": {"fired": False, "value": 0.1, "threshold": 0.5},
        "prediction_drift": {"fired": False, "value": None, "threshold": 0.1},
    },
    "metrics": {"votes": 2},
}
LABELLED = {
    "concept_drift": True,
    "n_labels": 100,
    "accuracy": 0.8,
    "roc_auc": 0.9,
    "champion_accuracy": 0.9,
    "champion_roc_auc": 0.95,
    "accuracy_drop": 0.1,
    "roc_auc_drop": 0.05,
}


def _value(text: str, name: str, labels: dict[str, str]) -> float:
    """The one sample of `name` whose labels include `labels` (any order)."""
    for line in text.splitlines():
        match = re.match(r"^(\w+)\{(.*)\} (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    raise AssertionError(f"no {name}{labels} in the gateway's metrics")


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    with pushgateway(tmp_path) as url:
        monkeypatch.setenv(push.PUSHGATEWAY_ENV, url)
        yield url


def test_drift_outcome_lands_in_its_group(gateway: str) -> None:
    params = {"model_name": "review-sentiment", "thresholds": {"max_accuracy_drop": 0.04}}
    assert pipeline_metrics.push_drift_outcome(DRIFT_DAY, LABELLED, True, params, "manual__1")

    text = http_get(f"{gateway}/metrics")
    group = {"job": "driftloop_drift_check", "use_case": "reviews"}
    assert _value(text, "driftloop_drift_decision", {**group, "decision": "drift"}) == 1
    assert _value(text, "driftloop_drift_decision", {**group, "decision": "no_drift"}) == 0
    check = {**group, "check": "text_domain"}
    assert _value(text, "driftloop_drift_check_score", check) == 0.93
    assert _value(text, "driftloop_drift_check_threshold", check) == 0.7
    assert _value(text, "driftloop_drift_check_fired", check) == 1
    assert _value(text, "driftloop_drift_check_fired", {**group, "check": "feature_psi"}) == 0
    with pytest.raises(AssertionError):  # a check without a value pushes no score
        _value(text, "driftloop_drift_check_score", {**group, "check": "prediction_drift"})
    assert _value(text, "driftloop_label_coverage_ratio", group) == 0.25
    accuracy = {**group, "metric": "accuracy"}
    assert _value(text, "driftloop_realised_performance", accuracy) == 0.8
    assert _value(text, "driftloop_realised_performance_max_drop", accuracy) == 0.04
    assert _value(text, "driftloop_retrain_triggered", group) == 1
    assert _value(text, "driftloop_drift_run_info", {**group, "dag_run": "manual__1"}) == 1


def test_next_run_replaces_the_previous_runs_figures(gateway: str) -> None:
    pipeline_metrics.push_drift_outcome(DRIFT_DAY, LABELLED, True, {}, "day1")
    quiet = {"decision": "no_drift", "n_current": 300, "checks": {}}
    pipeline_metrics.push_drift_outcome(quiet, {"n_labels": 0}, False, {}, "day2")

    text = http_get(f"{gateway}/metrics")
    group = {"job": "driftloop_drift_check", "use_case": "reviews"}
    assert _value(text, "driftloop_drift_decision", {**group, "decision": "drift"}) == 0
    assert "driftloop_realised_performance{" not in text  # no labels today: no stale figure
    assert 'dag_run="day1"' not in text


def test_a_check_firing_alone_is_pushed_as_a_warning(gateway: str) -> None:
    """A prior shift: prediction drift fired, the day is no_drift; the warning is not dropped."""
    warned = {"metric": "prediction_drift", "value": 0.62, "threshold": 0.3, "detail": "x"}
    day = {
        "decision": "no_drift",
        "n_current": 500,
        "checks": {
            "prediction_drift": {"fired": True, "value": 0.62, "threshold": 0.3},
            "text_domain": {"fired": False, "value": 0.51, "threshold": 0.7},
        },
        "warnings": [warned],
        "metrics": {"votes": 1, "combined": {"score": 1.4, "threshold": 2.5}},
    }
    assert pipeline_metrics.push_drift_outcome(day, {"n_labels": 0}, False, {}, "day3")

    text = http_get(f"{gateway}/metrics")
    group = {"job": "driftloop_drift_check", "use_case": "reviews"}
    assert _value(text, "driftloop_drift_decision", {**group, "decision": "no_drift"}) == 1
    warning = {**group, "check": "prediction_drift"}
    assert _value(text, "driftloop_drift_check_warning", warning) == 1
    assert _value(text, "driftloop_drift_check_score", warning) == 0.62
    assert _value(text, "driftloop_drift_check_warning", {**group, "check": "text_domain"}) == 0
    assert _value(text, "driftloop_drift_warnings", group) == 1
    assert _value(text, "driftloop_drift_combined_score", group) == 1.4
    assert _value(text, "driftloop_drift_combined_threshold", group) == 2.5


def test_training_steps_add_to_one_group(gateway: str) -> None:
    assert pipeline_metrics.push_validation({"rows_read": 200, "rows_quarantined": 10}, "run_a")
    assert pipeline_metrics.push_features_written({"rows_written": 185})
    best = {
        "leaderboard": [
            {"family": "logreg", "best_value": 0.91, "n_trials": 4, "elapsed_s": 12.5},
            {"family": "nbsvm", "best_value": 0.89, "n_trials": 3, "elapsed_s": 8.0},
        ]
    }
    assert pipeline_metrics.push_search(best)

    text = http_get(f"{gateway}/metrics")
    group = {"job": "driftloop_training", "use_case": "reviews"}
    assert _value(text, "driftloop_training_rows_read", group) == 200
    assert _value(text, "driftloop_training_rows_quarantined", group) == 10
    assert _value(text, "driftloop_training_rows_written", group) == 185
    assert _value(text, "driftloop_training_quarantine_ratio", group) == 0.05
    family = {**group, "family": "nbsvm"}
    assert _value(text, "driftloop_search_best_validation_score", family) == 0.89
    assert _value(text, "driftloop_search_duration_seconds", family) == 8.0


def test_gate_samples_carry_both_scores_and_the_hold_streak() -> None:
    result = {
        "promoted": False,
        "decision": {"challenger_value": 0.90, "champion_value": 0.93},
    }
    samples = {
        (s.name, tuple(s.labels.items())): s.value
        for s in pipeline_metrics.gate_samples(result, holds=2)
    }
    assert samples[("driftloop_gate_promoted", ())] == 0
    assert samples[("driftloop_gate_consecutive_holds", ())] == 2
    assert samples[("driftloop_gate_score", (("role", "challenger"),))] == 0.90
    assert samples[("driftloop_gate_score", (("role", "champion"),))] == 0.93


def test_gate_samples_carry_every_gated_metric_and_the_failed_checks() -> None:
    from training.promote import GatePolicy, decide_promotion

    bacc = {"roc_auc": 0.976, "balanced_accuracy": 0.734, "log_loss": 0.2}
    decision = decide_promotion(
        bacc, {**bacc, "roc_auc": 0.947, "balanced_accuracy": 0.864}, GatePolicy()
    )
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for s in pipeline_metrics.gate_samples(
            {"promoted": decision.promote, "decision": decision.as_dict()}, holds=1
        )
    }
    score = "driftloop_gate_metric_score"
    assert samples[(score, (("metric", "balanced_accuracy"), ("role", "challenger")))] == 0.734
    assert samples[(score, (("metric", "balanced_accuracy"), ("role", "champion")))] == 0.864
    assert samples[(score, (("metric", "roc_auc"), ("role", "challenger")))] == 0.976
    assert samples[("driftloop_gate_failed_checks", ())] == 1
    assert samples[("driftloop_gate_promoted", ())] == 0


def test_rollback_moves_the_pushed_champion(gateway: str) -> None:
    pipeline_metrics.push_champion("review-sentiment", "4")
    pipeline_metrics.push_champion("review-sentiment", "3")

    text = http_get(f"{gateway}/metrics")
    assert (
        _value(
            text,
            "driftloop_registry_champion_info",
            {"job": "driftloop_registry", "model": "review-sentiment", "version": "3"},
        )
        == 1
    )
    assert 'version="4"' not in text


def test_without_a_gateway_pushing_is_a_noop_said_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(push.PUSHGATEWAY_ENV, raising=False)
    monkeypatch.setattr(push, "_said_disabled", False)
    with caplog.at_level(logging.INFO, logger="monitoring.push"):
        assert not pipeline_metrics.push_features_written({"rows_written": 1})
        assert not pipeline_metrics.push_features_written({"rows_written": 2})
    said = [r for r in caplog.records if push.PUSHGATEWAY_ENV in r.getMessage()]
    assert len(said) == 1


def test_an_unreachable_gateway_is_a_warning_not_a_failure(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.observability.tools import free_port

    monkeypatch.setenv(push.PUSHGATEWAY_ENV, f"http://127.0.0.1:{free_port()}")
    with caplog.at_level(logging.WARNING, logger="monitoring.push"):
        assert not pipeline_metrics.push_features_written({"rows_written": 1})
    assert any("could not push" in r.getMessage() for r in caplog.records)


def test_samples_of_one_metric_must_share_label_names() -> None:
    with pytest.raises(ValueError, match="same label names"):
        push.build_registry(
            [push.Sample("m", 1.0, "h", {"a": "1"}), push.Sample("m", 2.0, "h", {"b": "1"})]
        )


def test_hold_streak_counts_the_latest_held_back_versions(driftloop_home: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    from training.mlflow_utils import configure

    uri = configure()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = "push-hold-streak"
    client.create_registered_model(name)
    with mlflow.start_run() as run:
        mlflow.log_text("x", "model/placeholder.txt")
    verdicts = ["true", "false", "true", "false", "false"]
    for verdict in verdicts:
        version = client.create_model_version(
            name, f"runs:/{run.info.run_id}/model", run.info.run_id
        )
        client.set_model_version_tag(name, version.version, "gate.promote", verdict)
    assert pipeline_metrics.consecutive_holds(name) == 2
    client.set_model_version_tag(name, "5", "gate.promote", "true")
    assert pipeline_metrics.consecutive_holds(name) == 0
