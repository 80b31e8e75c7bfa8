"""What `drift_check`'s decide step hands to the trigger (None skips it)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pipelines.drift import decide

REASON = {"metric": "text_domain", "value": 0.95, "threshold": 0.7, "detail": "x"}
DRIFT = {"decision": "drift", "reasons": [REASON], "report_html": "/r.html", "mlflow_run_id": "m"}
QUIET = {"status": "ok", "concept_drift": False, "reasons": []}
DATA = {"retrain_data_path": "/landing/new.csv", "retrain_source": "amazon"}


def test_no_drift_keeps_the_champion() -> None:
    assert decide({"decision": "no_drift", "reasons": []}, QUIET, DATA, "r1") is None


def test_too_little_data_is_no_alarm(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    assert decide({"decision": "insufficient_data", "detail": "12 rows"}, QUIET, DATA, "r") is None
    assert "too little data" in caplog.text


def test_drift_with_landed_data_triggers_with_the_reason() -> None:
    params = {**DATA, "retrain_conf": {"n_trials": 2, "reason": "overridden"}}
    conf = decide(DRIFT, QUIET, params, "run-7")
    assert conf is not None
    assert conf["data_path"] == "/landing/new.csv" and conf["source"] == "amazon"
    assert conf["n_trials"] == 2
    assert conf["reason"].startswith("drift_check run-7: data drift; text_domain=0.95")
    assert conf["trigger"]["dag_run"] == "run-7"
    assert conf["trigger"]["report_html"] == "/r.html"


def test_concept_drift_alone_triggers() -> None:
    performance = {
        "concept_drift": True,
        "reasons": [{"metric": "roc_auc_drop", "value": 0.2, "threshold": 0.05}],
    }
    conf = decide({"decision": "no_drift", "reasons": []}, performance, DATA, "r")
    assert conf is not None and "concept drift" in conf["reason"]


def test_drift_without_configured_or_labelled_data_is_reported_not_retrained(
    driftloop_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # No data Param: the retrain would use the champion's snapshot plus new labelled rows;
    # with no champion, no feedback and an empty landing folder there is nothing new.
    params = {"retrain_data_path": "", "model_name": "no-such-model"}
    assert decide(DRIFT, QUIET, params, "r") is None
    assert "nothing new is labelled" in caplog.text
    extra = {"retrain_extra_sources": [{"path": "/landing/k.csv", "source": "kindle"}]}
    conf = decide(DRIFT, QUIET, extra, "r")
    assert conf is not None and conf["extra_sources"] == extra["retrain_extra_sources"]


def test_retraining_can_be_switched_off() -> None:
    assert decide(DRIFT, QUIET, {**DATA, "retrain": False}, "r") is None


def test_warning_tag_names_each_check_with_its_numbers() -> None:
    from pipelines.drift import warning_tag

    assert warning_tag([]) == ""
    tag = warning_tag(
        [
            {"metric": "prediction_drift", "value": 0.6234, "threshold": 0.3, "detail": "x"},
            {"metric": "text_domain", "value": None, "threshold": 0.7, "detail": "skipped"},
        ]
    )
    assert tag == "prediction_drift=0.6234 (threshold 0.3); text_domain=None (threshold 0.7)"


def test_tabular_drift_without_data_params_builds_its_retraining_data_too(
    driftloop_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Like reviews: snapshot + labelled predictions + landing folder (end to end in
    # tests/serving/test_usecase_log.py); with none of them there is nothing to retrain on.
    caplog.set_level(logging.INFO)
    params = {"use_case": "credit", "model_name": "no-such-credit-model"}
    assert decide(DRIFT, QUIET, params, "r") is None
    assert "nothing new is labelled" in caplog.text
    assert "landing/credit" in caplog.text
