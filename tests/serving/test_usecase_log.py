"""Every use case's traffic goes through the same machinery: prediction log, feedback, metrics.

A real credit pipeline (logistic regression from the training zoo on synthetic clients) is
registered in the session's MLflow store and served by the real app under `/v1/credit/`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from contracts.credit import FEATURE_CONTRACT_VERSION, RAW_FIELDS
from contracts.sources import load_sources, source_columns
from features.credit import FEATURE_COLUMNS, RAW_COLUMNS, build_features
from serving.app import create_app
from serving.prediction_log import log_schema, read_predictions, read_shadow_pairs
from synthetic.credit import generate


@dataclass(frozen=True)
class CreditModels:
    name: str
    pipelines: dict[str, Any]  # version -> fitted pipeline
    rows: list[dict[str, Any]]
    labels: list[int]


def _fit(raw: pd.DataFrame, labels: pd.Series, c: float) -> Any:
    from training.zoo import build_pipeline, layout_for, search_spaces_for, to_servable

    model = build_pipeline(
        "logreg",
        {"C": c},
        spaces=search_spaces_for("credit"),
        layout=layout_for("credit"),
    ).fit(build_features(raw), labels)
    return to_servable(model)


@pytest.fixture(scope="module")
def credit_models(tracking_uri: str) -> CreditModels:
    """Two credit versions: 1 holds `champion`, 2 (fit on other rows) holds `challenger`."""
    import mlflow
    import mlflow.sklearn

    entry = load_sources()["credit_synthetic"]
    mapping = source_columns(entry, RAW_COLUMNS)
    clients = generate(1600, seed=5)
    raw = clients.rename(columns={f: c for c, f in mapping.items()})
    labels = clients[entry["label_column"]]
    name = f"credit-log-{uuid.uuid4().hex[:8]}"
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    pipelines: dict[str, Any] = {}
    for part, c, alias in (
        (slice(0, 800), 1.0, "champion"),
        (slice(800, 1600), 0.01, "challenger"),
    ):
        model = _fit(raw.iloc[part], labels.iloc[part], c)
        mlflow.set_tracking_uri(tracking_uri)
        with mlflow.start_run(run_name=f"credit-{alias}"):
            info = mlflow.sklearn.log_model(model, name="model", serialization_format="cloudpickle")
        version = mlflow.register_model(info.model_uri, name)
        client.set_model_version_tag(
            name, version.version, "feature_contract_version", FEATURE_CONTRACT_VERSION
        )
        client.set_registered_model_alias(name, alias, version.version)
        pipelines[str(version.version)] = model
    rows = raw[list(RAW_FIELDS)].tail(60).to_dict("records")
    return CreditModels(name, pipelines, rows, [int(v) for v in labels.tail(60)])


@pytest.fixture
def credit_api(
    credit_models: CreditModels,
    settings_for: Any,
    champion_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[TestClient, str]]:
    monkeypatch.setenv("DRIFTLOOP_MODEL_NAME_CREDIT", credit_models.name)
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    settings = settings_for(
        champion_name, use_cases="credit", prediction_log_url=url, prediction_log_flush_seconds=0.05
    )
    with TestClient(create_app(settings)) as api:
        _wait_ready(api, "/v1/credit/model-info")
        yield api, url


def _wait_ready(api: TestClient, path: str) -> None:
    for _ in range(300):
        if api.get(path).status_code == 200:
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} never answered 200: {api.get(path).text}")


def _sample(text: str, name: str, labels: str) -> float:
    match = re.search(
        r"^" + re.escape(name) + r"\{" + re.escape(labels) + r"\} (\S+)$", text, flags=re.MULTILINE
    )
    assert match, f"no sample {name}{{{labels}}}"
    return float(match.group(1))


def test_credit_predictions_feedback_and_metrics_are_logged_per_use_case(
    credit_api: tuple[TestClient, str], credit_models: CreditModels
) -> None:
    api, url = credit_api
    before = datetime.now(UTC) - timedelta(seconds=1)
    rows = credit_models.rows
    single = [api.post("/v1/credit/predict", json=row).json() for row in rows[:3]]
    batch = api.post("/v1/credit/predict/batch", json={"rows": rows[3:8]}).json()
    review = api.post("/predict", json={"text": "A fine film."}).json()
    shadow = api.get("/v1/credit/model-info").json()["shadow"]
    assert shadow["enabled"] is False and shadow["scored_rows"] == 0

    ids = [a["request_id"] for a in single] + [p["request_id"] for p in batch["predictions"]]
    assert (
        api.post("/v1/credit/feedback", json={"request_id": ids[0], "label": 1}).status_code == 201
    )
    second = api.post("/v1/credit/feedback", json={"request_id": ids[4], "label": 0})
    assert second.status_code == 201
    assert second.json()["label_name"] == "no_default"
    # Ids are per use case: a review's id is unknown to credit, and the other way round.
    unknown = api.post("/v1/credit/feedback", json={"request_id": review["request_id"], "label": 1})
    assert unknown.status_code == 404
    assert api.post("/feedback", json={"request_id": ids[0], "label": 1}).status_code == 404
    assert (
        api.post(
            "/v1/reviews/feedback", json={"request_id": review["request_id"], "label": 1}
        ).status_code
        == 201
    )
    assert (
        api.post("/v1/credit/feedback", json={"request_id": ids[0], "label": 2}).status_code == 422
    )
    metrics = api.get("/metrics").text

    frame = read_predictions(
        url, before, datetime.now(UTC) + timedelta(seconds=1), use_case="credit"
    )
    schema = log_schema("credit")
    assert list(frame.columns) == list(schema.read_columns)
    assert frame["request_id"].tolist() == ids
    assert set(frame["model_name"]) == {credit_models.name}
    assert set(frame["model_version"]) == {"1"}
    expected_features = build_features(pd.DataFrame(rows[:8]))[list(FEATURE_COLUMNS)]
    pd.testing.assert_frame_equal(
        frame[list(FEATURE_COLUMNS)].reset_index(drop=True),
        expected_features.reset_index(drop=True),
        check_dtype=True,
    )
    pd.testing.assert_frame_equal(
        frame[list(RAW_COLUMNS)].reset_index(drop=True),
        pd.DataFrame(rows[:8])[list(RAW_COLUMNS)].reset_index(drop=True),
        check_dtype=False,
    )
    served = [a["probability"] for a in single] + [p["probability"] for p in batch["predictions"]]
    assert frame["score"].tolist() == pytest.approx(served, abs=1e-12)
    assert frame["feedback_label"].tolist()[:5] == [1, pd.NA, pd.NA, pd.NA, 0]
    assert frame["feedback_ts"].notna().tolist() == [True, False, False, False, True, *[False] * 3]
    reviews = read_predictions(url, before, datetime.now(UTC) + timedelta(seconds=1))
    assert reviews["request_id"].tolist() == [review["request_id"]]
    assert reviews["feedback_label"].tolist() == [1]

    # Metrics: scores, labels and batches counted per use case; model gauges per use case.
    credit = 'model_version="1",use_case="credit"'
    assert _sample(metrics, "driftloop_prediction_score_count", credit) == 8
    assert _sample(metrics, "driftloop_batch_size_rows_sum", 'use_case="credit"') == 8
    assert (
        _sample(metrics, "driftloop_predictions_total", f'label="0",{credit}')
        + _sample(metrics, "driftloop_predictions_total", f'label="1",{credit}')
        == 8
    )
    assert _sample(metrics, "driftloop_model_loaded_timestamp_seconds", 'use_case="credit"') > 1.7e9
    assert _sample(metrics, "driftloop_model_info", f'name="{credit_models.name}",version="1"') == 1
    assert (
        _sample(
            metrics, "driftloop_predictions_total", 'label="0",model_version="1",use_case="reviews"'
        )
        + _sample(
            metrics, "driftloop_predictions_total", 'label="1",model_version="1",use_case="reviews"'
        )
        == 1
    )


def test_credit_requests_count_against_the_shared_rate_limit(
    credit_models: CreditModels,
    settings_for: Any,
    champion_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRIFTLOOP_MODEL_NAME_CREDIT", credit_models.name)
    settings = settings_for(
        champion_name,
        use_cases="credit",
        prediction_log_enabled=False,
        rate_limit_per_second=0.01,
        rate_limit_burst=3,
    )
    with TestClient(create_app(settings)) as api:
        _wait_ready(api, "/v1/credit/model-info")
        rows = credit_models.rows
        # Each row of a batch costs one token; the bucket is the client's, whatever the use case.
        assert api.post("/v1/credit/predict/batch", json={"rows": rows[:2]}).status_code == 200
        codes = [api.post("/v1/credit/predict", json=row).status_code for row in rows[:2]]
        assert codes == [200, 429]
        assert api.post("/predict", json={"text": "fine"}).status_code == 429
        metrics = api.get("/metrics").text
    assert (
        _sample(metrics, "driftloop_rate_limited_requests_total", 'route="/v1/credit/predict"') == 1
    )


def test_shadow_challenger_scores_a_sampled_share_in_the_background_and_is_compared_live(
    credit_models: CreditModels,
    settings_for: Any,
    champion_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    from serving.live_compare import live_comparison
    from serving.shadow import sampled

    monkeypatch.setenv("DRIFTLOOP_MODEL_NAME_CREDIT", credit_models.name)
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    settings = settings_for(
        champion_name,
        use_cases="credit",
        prediction_log_url=url,
        prediction_log_flush_seconds=0.05,
        shadow_fraction=0.5,
        shadow_interval_seconds=0.05,
    )
    before = datetime.now(UTC) - timedelta(seconds=1)
    rows, labels = credit_models.rows, credit_models.labels
    app = create_app(settings)
    with TestClient(app) as api:
        _wait_ready(api, "/v1/credit/model-info")
        for _ in range(300):
            info = api.get("/v1/credit/model-info").json()
            if info["shadow"]["version"] == "2":
                break
            time.sleep(0.1)
        assert info["version"] == "1"
        assert info["shadow"] == {
            "enabled": True,
            "alias": "challenger",
            "fraction": 0.5,
            "version": "2",
            "scored_rows": 0,
        }
        answers = []
        for start in range(0, len(rows), 20):
            batch = api.post("/v1/credit/predict/batch", json={"rows": rows[start : start + 20]})
            answers += batch.json()["predictions"]
        assert {a["model_version"] for a in answers} == {"1"}
        ids = [a["request_id"] for a in answers]
        for request_id, label in zip(ids, labels, strict=True):
            api.post("/v1/credit/feedback", json={"request_id": request_id, "label": label})
        assert app.state.use_cases["credit"].shadow.flush(timeout=30)
        picked = [rid for rid in ids if sampled(rid, 0.5)]
        assert 0 < len(picked) < len(ids)
        assert api.get("/v1/credit/model-info").json()["shadow"]["scored_rows"] == len(picked)
        metrics = api.get("/metrics").text
    assert _sample(metrics, "driftloop_shadow_scored_rows_total", 'use_case="credit"') == len(
        picked
    )
    assert _sample(metrics, "driftloop_shadow_fraction", 'use_case="credit"') == 0.5

    end = datetime.now(UTC) + timedelta(seconds=1)
    pairs = read_shadow_pairs(url, before, end, use_case="credit")
    assert sorted(pairs["request_id"]) == sorted(picked)
    assert set(pairs["champion_version"]) == {"1"} and set(pairs["challenger_version"]) == {"2"}
    position = {rid: i for i, rid in enumerate(ids)}
    order = [position[rid] for rid in pairs["request_id"]]
    features = build_features(pd.DataFrame([rows[i] for i in order]))[list(FEATURE_COLUMNS)]
    for version, role in (("1", "champion"), ("2", "challenger")):
        expected = credit_models.pipelines[version].predict_proba(features)[:, 1]
        assert pairs[f"{role}_score"].to_numpy() == pytest.approx(expected, abs=1e-9)
    assert pairs["feedback_label"].tolist() == [labels[i] for i in order]
    assert not (pairs["champion_score"] == pairs["challenger_score"]).all()

    live = live_comparison(url, before, end, use_case="credit", threshold=0.5)
    truth = [labels[i] for i in order]
    assert live["labelled_rows"] == len(picked)
    for role in ("champion", "challenger"):
        scores = pairs[f"{role}_score"].to_numpy()
        assert live[role]["roc_auc"] == pytest.approx(roc_auc_score(truth, scores))
        assert live[role]["balanced_accuracy"] == pytest.approx(
            balanced_accuracy_score(truth, scores >= 0.5)
        )
    assert live["challenger"]["versions"] == ["2"]
    # Only the champion's answers are in the predictions table: shadow scores never answer.
    answered = read_predictions(url, before, end, use_case="credit")
    assert sorted(answered["request_id"]) == sorted(ids)
    assert set(answered["model_version"]) == {"1"}


def test_a_full_shadow_queue_skips_rows_instead_of_growing(
    credit_models: CreditModels,
    settings_for: Any,
    champion_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRIFTLOOP_MODEL_NAME_CREDIT", credit_models.name)
    settings = settings_for(
        champion_name,
        use_cases="credit",
        prediction_log_url=f"sqlite:///{tmp_path / 'predictions.db'}",
        shadow_fraction=1.0,
        shadow_max_queue=3,
        shadow_interval_seconds=30.0,  # the feeder does not drain the queue during the request
        shadow_batch_rows=2,
    )
    app = create_app(settings)
    with TestClient(app) as api:
        _wait_ready(api, "/v1/credit/model-info")
        for _ in range(300):
            if api.get("/v1/credit/model-info").json()["shadow"]["version"] == "2":
                break
            time.sleep(0.1)
        answer = api.post("/v1/credit/predict/batch", json={"rows": credit_models.rows[:10]})
        assert answer.status_code == 200
        shadow = app.state.use_cases["credit"].shadow
        assert shadow.flush(timeout=30)
        metrics = api.get("/metrics").text
        info = api.get("/v1/credit/model-info").json()["shadow"]
    assert info["scored_rows"] == 3
    skipped = 'reason="queue_full",use_case="credit"'
    assert _sample(metrics, "driftloop_shadow_skipped_rows_total", skipped) == 7
    assert _sample(metrics, "driftloop_shadow_scored_rows_total", 'use_case="credit"') == 3
    assert _sample(metrics, "driftloop_shadow_scoring_seconds_total", 'use_case="credit"') > 0


def _shadow_app(
    credit_models: CreditModels, settings_for: Any, champion: str, url: str, **overrides: Any
) -> Any:
    settings = settings_for(
        champion,
        use_cases="credit",
        prediction_log_url=url,
        prediction_log_flush_seconds=0.05,
        shadow_fraction=1.0,
        shadow_interval_seconds=0.05,
        **overrides,
    )
    return create_app(settings)


def _wait_for(check: Any, what: str) -> None:
    for _ in range(1200):
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting: {what}")


def _shadow_log(
    credit_models: CreditModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, datetime]:
    """Serve the credit models by name; the prediction log's URL and a start before any row."""
    monkeypatch.setenv("DRIFTLOOP_MODEL_NAME_CREDIT", credit_models.name)
    return f"sqlite:///{tmp_path / 'predictions.db'}", datetime.now(UTC) - timedelta(seconds=1)


def _challenger_scores(credit_models: CreditModels, rows: list[dict[str, Any]]) -> Any:
    features = build_features(pd.DataFrame(rows))[list(FEATURE_COLUMNS)]
    return credit_models.pipelines["2"].predict_proba(features)[:, 1]


def test_shadow_scoring_runs_in_a_low_priority_child_process(
    credit_models: CreditModels,
    settings_for: Any,
    champion_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, before = _shadow_log(credit_models, tmp_path, monkeypatch)
    app = _shadow_app(credit_models, settings_for, champion_name, url, shadow_nice=5)
    rows = credit_models.rows[:30]
    with TestClient(app) as api:
        _wait_ready(api, "/v1/credit/model-info")
        _wait_for(
            lambda: api.get("/v1/credit/model-info").json()["shadow"]["version"] == "2",
            "the shadow process loads the challenger",
        )
        process = app.state.shadow_process
        pid = process.pid
        assert pid is not None and pid != os.getpid()
        # The child added DRIFTLOOP_SHADOW_NICE to the worker's niceness (capped at 19).
        expected = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 5)
        assert process.niceness == expected == os.getpriority(os.PRIO_PROCESS, pid)
        # Linux keeps a niceness per thread: every thread of the child runs at the lower one.
        tasks = Path(f"/proc/{pid}/task")
        for tid in os.listdir(tasks) if tasks.is_dir() else []:
            with contextlib.suppress(ProcessLookupError):  # a short-lived thread may be gone
                assert os.getpriority(os.PRIO_PROCESS, int(tid)) == expected
        # A stop signal to the whole process group leaves the child to the worker's shutdown.
        status = Path(f"/proc/{pid}/status")
        if status.is_file():
            ignored = re.search(r"^SigIgn:\s*([0-9a-f]+)$", status.read_text(), re.M)
            assert ignored
            for sig in (signal.SIGTERM, signal.SIGINT):
                assert int(ignored.group(1), 16) & (1 << (sig - 1))
        answer = api.post("/v1/credit/predict/batch", json={"rows": rows}).json()
        ids = [p["request_id"] for p in answer["predictions"]]
        assert app.state.use_cases["credit"].shadow.flush(timeout=60)
        # The rows were scored where the challenger lives: only the child holds it.
        assert process.pid == pid
        assert api.get("/v1/credit/model-info").json()["shadow"]["scored_rows"] == len(rows)
    # Read once the app stopped: the champion's rows, which the pairs join, are written then.
    pairs = read_shadow_pairs(url, before, datetime.now(UTC), use_case="credit")
    assert sorted(pairs["request_id"]) == sorted(ids)
    assert set(pairs["challenger_version"]) == {"2"}
    position = {rid: i for i, rid in enumerate(ids)}
    expected_scores = _challenger_scores(credit_models, rows)
    for rid, score in zip(pairs["request_id"], pairs["challenger_score"], strict=True):
        assert score == pytest.approx(expected_scores[position[rid]], abs=1e-9)


def test_a_killed_shadow_process_is_restarted_and_scoring_resumes(
    credit_models: CreditModels,
    settings_for: Any,
    champion_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, before = _shadow_log(credit_models, tmp_path, monkeypatch)
    app = _shadow_app(credit_models, settings_for, champion_name, url)
    shadow = app.state.use_cases["credit"].shadow
    first, second = credit_models.rows[:10], credit_models.rows[10:25]
    with TestClient(app) as api:
        _wait_ready(api, "/v1/credit/model-info")
        _wait_for(lambda: shadow.version == "2", "the shadow process loads the challenger")
        api.post("/v1/credit/predict/batch", json={"rows": first})
        assert shadow.flush(timeout=60)
        process = app.state.shadow_process
        killed = process.pid
        os.kill(killed, signal.SIGKILL)
        _wait_for(
            lambda: process.pid not in (None, killed) and shadow.version == "2",
            "a new shadow process with the challenger",
        )
        answer = api.post("/v1/credit/predict/batch", json={"rows": second}).json()
        assert answer["model_version"] == "1"
        assert shadow.flush(timeout=60)
        info = api.get("/v1/credit/model-info").json()["shadow"]
        metrics = api.get("/metrics").text
    pairs = read_shadow_pairs(url, before, datetime.now(UTC), use_case="credit")
    assert process.restarts == 1
    restarts = re.search(r"^driftloop_shadow_process_restarts_total (\S+)$", metrics, re.M)
    assert restarts and float(restarts.group(1)) == 1
    assert info["version"] == "2" and info["scored_rows"] == len(first) + len(second)
    resumed = {p["request_id"] for p in answer["predictions"]}
    assert resumed <= set(pairs["request_id"])
    assert len(pairs) == len(first) + len(second)


def test_credit_retrains_from_the_snapshot_api_feedback_and_landing_folder(
    credit_api: tuple[TestClient, str],
    credit_models: CreditModels,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """drift_check's default retraining data for a tabular use case, end to end.

    Predictions and labels go through /v1/credit/predict and /v1/credit/feedback; the
    champion's training snapshot is ingested like training_pipeline's; a landed file sits in
    landing/credit/. The feedback rows come back as raw credit rows that validation accepts.
    """
    import mlflow

    from ingestion.ingest import file_sha256, snapshot_sources
    from pipelines.drift import decide
    from pipelines.params import check_training_params
    from pipelines.training import (
        data_lineage,
        ingest_sources,
        log_data_lineage,
        run_dir_for,
        validate,
    )

    api, url = credit_api
    monkeypatch.setenv("DRIFTLOOP_PREDICTION_LOG_URL", url)
    monkeypatch.setenv("DRIFTLOOP_LANDING_DIR", str(tmp_path / "landing"))
    # The champion was trained from a snapshot of 200 synthetic clients.
    trained = tmp_path / "clients.csv"
    generate(200, seed=9).to_csv(trained, index=False)
    airflow_run = f"t_{uuid.uuid4().hex[:8]}"
    manifest = snapshot_sources(
        [{"path": str(trained), "source": "credit_synthetic"}], str(run_dir_for(airflow_run))
    )
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias(credit_models.name, "champion")
    client.set_tag(champion.run_id, "airflow_run_id", airflow_run)
    client.set_tag(champion.run_id, "data_sha256", manifest["data_sha256"])
    # Eight clients scored through the API; five of them labelled later.
    rows = credit_models.rows[:8]
    answers = api.post("/v1/credit/predict/batch", json={"rows": rows}).json()["predictions"]
    ids = [a["request_id"] for a in answers]
    labelled = {ids[i]: credit_models.labels[i] for i in (0, 2, 3, 5, 7)}
    for request_id, label in labelled.items():
        feedback = api.post("/v1/credit/feedback", json={"request_id": request_id, "label": label})
        assert feedback.status_code == 201
    landing = tmp_path / "landing" / "credit"
    landing.mkdir(parents=True)
    generate(30, seed=10).to_csv(landing / "week48.csv", index=False)
    # The feedback rows must be in the log before the drift check reads it.
    for _ in range(100):
        logged = read_predictions(
            url, datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC), use_case="credit"
        )
        if logged["feedback_label"].notna().sum() == 5:
            break
        time.sleep(0.1)

    drift = {"decision": "drift", "reasons": [{"metric": "psi", "value": 0.9, "threshold": 0.2}]}
    quiet = {"status": "ok", "concept_drift": False, "reasons": []}
    params = {"use_case": "credit", "model_name": credit_models.name}
    conf = decide(drift, quiet, params, f"scheduled__{airflow_run}")

    assert conf is not None
    parts = {p["kind"]: p for p in conf["trigger"]["retrain_data"]["parts"]}
    assert conf["trigger"]["retrain_data"]["rows_by_kind"] == {
        "snapshot": 200,
        "feedback": 5,
        "landing": 30,
    }
    assert parts["snapshot"]["sha256"] == manifest["sources"][0]["sha256"]
    for part in parts.values():
        assert file_sha256(Path(part["path"]))[0] == part["sha256"]
    # The feedback file is in the credit source's own layout: its column names, its label.
    entry = load_sources()[parts["feedback"]["source"]]
    written = pd.read_csv(parts["feedback"]["path"])
    labels = written[entry["label_column"]]
    assert dict(zip(written["request_id"], labels, strict=True)) == labelled
    by_id = {a["request_id"]: row for a, row in zip(answers, rows, strict=True)}
    expected = pd.DataFrame([by_id[i] for i in written["request_id"]])[list(RAW_COLUMNS)]
    mapping = source_columns(entry, RAW_COLUMNS)
    canonical = written.rename(columns={f: c for c, f in mapping.items()})[list(RAW_COLUMNS)]
    pd.testing.assert_frame_equal(canonical, expected, check_dtype=False)

    # training_pipeline takes the conf as is: ingests, validates and records the lineage.
    checked = check_training_params(conf, check_files=True)
    assert checked["use_case"] == "credit"
    ingested = ingest_sources(checked, f"retrain_{airflow_run}")
    report = validate(ingested, 0.05)
    assert report["rows_read"] == 235 and report["rows_quarantined"] == 0, report
    # Segments: the landed file is a credit_synthetic file like the snapshot; feedback is one.
    assert report["segments"] == {"credit_synthetic": 230, "feedback": 5}
    lineage = data_lineage(checked, ingested)
    assert lineage["rows_by_kind"] == {"snapshot": 200, "feedback": 5, "landing": 30}
    with mlflow.start_run() as run:
        pass
    log_data_lineage(run.info.run_id, checked, ingested)
    tags = client.get_run(run.info.run_id).data.tags
    assert tags["data_rows_feedback"] == "5" and tags["data_rows_landing"] == "30"
