"""The shadow phase: `live.hold_for_shadow` keeps a challenger waiting, the re-gate decides.

Same real pieces as test_live_gate.py (whose models and traffic writer are reused): an MLflow
(SQLite) registry, models trained by `train_model`, and a SQLite prediction log written by
serving's writers. Here the traffic is written *after* registration, as it happens in
production: the challenger is registered with an empty log, waits, is shadow-scored, and
`regate_challenger` decides on what the log then holds.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import mlflow
import pytest

from serving.model import ModelHolder, ModelNotFoundError
from tests.training import test_live_gate as live_gate
from training import mlflow_utils
from training.promote import (
    GATE_CONFIG,
    GatePolicy,
    GatePolicyError,
    load_gate_policy,
    policy_from_dict,
    register_and_gate,
)
from training.regate import regate_challenger

pytestmark = pytest.mark.slow

# test_live_gate's models (a weak champion, a good challenger), traffic writer and helpers.
runs = live_gate.runs
NOW, write_live_traffic, _aliases = live_gate.NOW, live_gate.write_live_traffic, live_gate._aliases


def _holding() -> GatePolicy:
    policy = load_gate_policy(GATE_CONFIG)
    assert policy.live is not None and policy.live.hold_for_shadow is False  # the default
    return replace(policy, live=replace(policy.live, hold_for_shadow=True))


def _awaiting(
    runs: dict[str, Any], features_dir: Path, tmp_path: Path
) -> tuple[str, str, GatePolicy, dict[str, Any]]:
    """v1 (weak) is champion; v2 (good) passes offline and, held for shadow, awaits traffic."""
    model, url = f"shadow-{uuid.uuid4().hex[:8]}", f"sqlite:///{tmp_path / 'predictions.db'}"
    policy = _holding()
    first = register_and_gate(
        runs["weak"]["run_id"], model, str(features_dir), policy, store_url=url
    )
    assert first["promoted"] and first["version"] == "1"  # no champion: nothing to wait for
    second = register_and_gate(
        runs["good"]["run_id"], model, str(features_dir), policy, store_url=url
    )
    assert second["version"] == "2"
    return model, url, policy, second


def _tags(model: str, version: str = "2") -> dict[str, str]:
    return mlflow_utils.client().get_model_version(model, version).tags


def test_hold_for_shadow_is_read_from_gate_yaml_and_checked() -> None:
    policy = load_gate_policy(GATE_CONFIG)
    data = {"metrics": {"roc_auc": {}}, "live": {"metrics": {"roc_auc": {}}}}
    assert policy_from_dict(data).live.hold_for_shadow is False
    data["live"].update(hold_for_shadow=True, max_wait_days=3)
    parsed = policy_from_dict(data).live
    assert parsed.hold_for_shadow is True and parsed.max_wait_days == 3.0
    assert policy.as_dict()["live"]["hold_for_shadow"] is False
    with pytest.raises(GatePolicyError, match="hold_for_shadow must be true or false"):
        policy_from_dict({**data, "live": {**data["live"], "hold_for_shadow": "yes"}})
    with pytest.raises(GatePolicyError, match="max_wait_days must be > 0"):
        policy_from_dict({**data, "live": {**data["live"], "max_wait_days": 0}})


def test_hold_for_shadow_keeps_a_passing_challenger_unpromoted(
    runs: dict[str, Any], features_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="training.promote")
    model, _, _, second = _awaiting(runs, features_dir, tmp_path)

    assert not second["promoted"] and second["awaiting_shadow"]
    assert _aliases(model) == {"champion": "1", "challenger": "2"}
    overall = [c for c in second["decision"]["checks"] if c["scope"] == "overall"]
    assert overall and all(c["verdict"] == "ok" for c in overall)  # it passes offline
    tags = _tags(model)
    assert tags["gate.decision"] == "awaiting_shadow" and tags["gate.promote"] == "false"
    assert tags["gate.reason"].startswith("awaiting shadow traffic")
    assert tags["gate.offline_reason"].startswith("promoted:")
    assert tags["gate.live"] == "too_few_rows" and tags["gate.live_labelled_rows"] == "0"
    assert tags["gate.awaiting_since"] and float(tags["gate.challenger_value"]) > 0.5
    assert "awaiting shadow traffic" in caplog.text
    assert _tags(model, "1")["gate.decision"] == "promoted"


def test_regate_promotes_on_enough_good_live_rows(
    runs: dict[str, Any], features_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="training")
    model, url, policy, _ = _awaiting(runs, features_dir, tmp_path)
    write_live_traffic(url, model, 300, champion_flip=0.3, challenger_flip=0.1)

    result = regate_challenger("reviews", model, policy, store_url=url)

    assert result["status"] == "promoted", result["reason"]
    assert result["champion_version"] == "2"
    assert _aliases(model) == {"champion": "2"}
    tags = _tags(model)
    assert tags["gate.decision"] == "promoted" and tags["gate.promote"] == "true"
    assert tags["gate.live"] == "judged" and tags["gate.live_labelled_rows"] == "300"
    assert "live traffic agrees" in tags["gate.reason"]
    assert tags["promoted_by"] == "gate (shadow re-gate)"
    report = json.loads(tags["gate.live_report"])
    assert {r[1] for r in report["checks"] if r[0] == "live"} == {
        "roc_auc",
        "balanced_accuracy",
        "log_loss",
    }
    assert "300 labelled shadow-scored rows" in caplog.text and "| live " in caplog.text


def test_regate_holds_back_on_a_live_regression_and_stops_shadow_scoring(
    runs: dict[str, Any], features_dir: Path, tmp_path: Path
) -> None:
    model, url, policy, _ = _awaiting(runs, features_dir, tmp_path)
    write_live_traffic(url, model, 300, champion_flip=0.1, challenger_flip=0.4)
    shadow = ModelHolder(mlflow.get_tracking_uri(), use_case="reviews")
    assert shadow.load(model, "challenger").version == "2"  # what serving shadow-scores

    result = regate_challenger("reviews", model, policy, store_url=url)

    assert result["status"] == "held_back"
    assert _aliases(model) == {"champion": "1"}
    tags = _tags(model)
    assert tags["gate.decision"] == "held_back" and tags["gate.promote"] == "false"
    assert tags["gate.reason"].startswith("held back on live traffic")
    assert tags["gate.live"] == "judged" and tags["gate.live_labelled_rows"] == "300"
    live_rows = [r for r in json.loads(tags["gate.live_report"])["checks"] if r[0] == "live"]
    assert live_rows and all(r[-1] == "regressed" for r in live_rows)
    # Serving's poll of the removed alias says "not found", which the shadow loop treats as
    # "challenger gone: pause" (serving.shadow_child, in the shadow process), not as an error.
    with pytest.raises(ModelNotFoundError):
        shadow.reload_if_changed(model, "challenger")
    # Held back for good: the next daily run finds nothing to re-gate.
    assert regate_challenger("reviews", model, policy, store_url=url)["status"] == "no_challenger"


def test_regate_waits_on_too_few_labelled_rows(
    runs: dict[str, Any], features_dir: Path, tmp_path: Path
) -> None:
    model, url, policy, _ = _awaiting(runs, features_dir, tmp_path)
    write_live_traffic(url, model, 50, champion_flip=0.05, challenger_flip=0.5)

    result = regate_challenger("reviews", model, policy, store_url=url)

    assert result["status"] == "waiting"
    assert "50 labelled shadow-scored row(s)" in result["reason"]
    assert _aliases(model) == {"champion": "1", "challenger": "2"}
    tags = _tags(model)
    assert tags["gate.decision"] == "awaiting_shadow" and tags["gate.promote"] == "false"
    assert tags["gate.live"] == "too_few_rows" and tags["gate.live_labelled_rows"] == "50"
    assert tags["gate.regated_at"]


def test_regate_gives_up_after_max_wait_days(
    runs: dict[str, Any], features_dir: Path, tmp_path: Path
) -> None:
    model, url, policy, _ = _awaiting(runs, features_dir, tmp_path)
    write_live_traffic(url, model, 50, champion_flip=0.3, challenger_flip=0.1)
    assert policy.live is not None and policy.live.max_wait_days == 14.0

    waiting = regate_challenger(
        "reviews", model, policy, store_url=url, now=NOW + timedelta(days=13)
    )
    assert waiting["status"] == "waiting"
    result = regate_challenger(
        "reviews", model, policy, store_url=url, now=NOW + timedelta(days=15)
    )

    assert result["status"] == "held_back"
    assert _aliases(model) == {"champion": "1"}
    tags = _tags(model)
    assert tags["gate.decision"] == "held_back"
    assert "longer than live.max_wait_days 14" in tags["gate.reason"]
    assert tags["gate.live"] == "too_few_rows" and tags["gate.live_labelled_rows"] == "50"


def test_regate_without_a_challenger_says_so(
    runs: dict[str, Any], features_dir: Path, tmp_path: Path
) -> None:
    model = f"shadow-{uuid.uuid4().hex[:8]}"
    register_and_gate(runs["weak"]["run_id"], model, str(features_dir), _holding())
    result = regate_challenger("reviews", model, _holding())
    assert result["status"] == "no_challenger" and "nothing to re-gate" in result["reason"]
    assert _aliases(model) == {"champion": "1"}


def test_a_newer_challenger_supersedes_one_still_awaiting_shadow_traffic(
    runs: dict[str, Any], features_dir: Path, tmp_path: Path
) -> None:
    model, url, policy, _ = _awaiting(runs, features_dir, tmp_path)
    third = register_and_gate(
        runs["good"]["run_id"], model, str(features_dir), policy, store_url=url
    )

    assert third["version"] == "3" and third["awaiting_shadow"]
    assert _aliases(model) == {"champion": "1", "challenger": "3"}
    old = _tags(model, "2")
    assert old["gate.decision"] == "superseded" and old["gate.superseded_by"] == "3"
    assert regate_challenger("reviews", model, policy, store_url=url)["version"] == "3"
