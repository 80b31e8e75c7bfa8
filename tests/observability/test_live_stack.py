"""The whole metrics path, live: every dashboard query returns data and a drift day pages.

Real processes on spare loopback ports, state in temp folders: the API
(`python -m serving`) with a registered model, a Pushgateway, the Airflow
StatsD exporter fed by Airflow's own StatsD client, and Prometheus scraping
all three with the committed scrape jobs and alert rules (1 s intervals).
Test traffic goes through the API; the real drift_check steps
(`pipelines.drift`) judge the logged day against the champion's reference
profile and push the outcome. Then every PromQL query of every committed
Grafana dashboard must return data, and DriftloopDriftDetected must fire.

Grafana itself cannot be installed here, so its interval macro
(`$__rate_interval`) is replaced by a fixed window before querying.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability.tools import (
    PROMETHEUS_DIR,
    REPO_ROOT,
    free_port,
    http_get,
    load_dashboards_module,
    pushgateway,
    require,
    running,
    wait_until,
)

pytestmark = pytest.mark.slow

MODEL = "observability-live"
DASHBOARDS = REPO_ROOT / "deploy" / "grafana" / "dashboards"
RATE_WINDOW = "30s"

AIRFLOW_EMITS = """
from datetime import timedelta
from airflow.configuration import conf
from airflow.observability import stats
from airflow.observability.metrics import stats_utils

stats.initialize(
    factory=stats_utils.get_stats_factory(),
    export_legacy_names=conf.getboolean("metrics", "legacy_names_on"),
)
stats.incr("scheduler_heartbeat", 1, 1)
stats.timing("dagrun.duration.failed", dt=timedelta(seconds=95), tags={"dag_id": "training_pipeline"})
stats.timing("task.duration", 4200.0, tags={"dag_id": "training_pipeline", "task_id": "featurize"})
stats.incr("ti.finish", tags={"dag_id": "training_pipeline", "task_id": "featurize", "state": "failed"})
"""


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}


def _prometheus_query(base: str, expr: str) -> dict[str, Any]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        return dict(json.loads(http_get(url)))
    except urllib.error.HTTPError as error:
        return dict(json.loads(error.read()))


def _has_data(answer: dict[str, Any]) -> bool:
    if answer.get("status") != "success":
        return False
    result = answer["data"]["result"]
    values = [r["value"][1] for r in result] if isinstance(result, list) else [result[1]]
    return any(math.isfinite(float(v)) for v in values)


@pytest.fixture(scope="module")
def champion(driftloop_home: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A registered champion with test figures, a promotion time and a reference profile."""
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from contracts.reviews import FEATURE_CONTRACT_VERSION, RAW_LABEL, RAW_TEXT
    from features.reviews import NUMERIC_FEATURES, TEXT_CLEAN, build_features
    from monitoring.reference import build_reference_profile, save_profile
    from serving.model import CONTRACT_TAG
    from synthetic.reviews import generate_reviews
    from training.mlflow_utils import configure

    uri = configure()
    data = generate_reviews(800, seed=21, domain="movies")
    features = build_features(data, text_col=RAW_TEXT)
    columns = ColumnTransformer(
        [
            ("tfidf", TfidfVectorizer(min_df=2), TEXT_CLEAN),
            ("numeric", StandardScaler(), list(NUMERIC_FEATURES)),
        ]
    )
    pipeline = Pipeline([("columns", columns), ("classifier", LogisticRegression(max_iter=500))])
    pipeline.fit(features, data[RAW_LABEL])
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = "observability-live"
    if client.get_experiment_by_name(experiment) is None:
        location = (driftloop_home / "mlflow" / "artifacts" / experiment).as_uri()
        client.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(
            pipeline, name="model", serialization_format="cloudpickle", pip_requirements=[]
        )
    profile = build_reference_profile(
        features, pipeline.predict_proba(features)[:, 1], data[RAW_LABEL], sample_size=600
    )
    folder = tmp_path_factory.mktemp("reference")
    client.log_artifact(
        run.info.run_id, str(save_profile(profile, folder / "profile.parquet")), "reference"
    )
    version = mlflow.register_model(info.model_uri, MODEL).version
    tags = {
        CONTRACT_TAG: FEATURE_CONTRACT_VERSION,
        "test_accuracy": "0.93",
        "test_roc_auc": "0.97",
        "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "gate.promote": "true",
    }
    for key, value in tags.items():
        client.set_model_version_tag(MODEL, version, key, value)
    client.set_registered_model_alias(MODEL, "champion", version)
    return str(version)


def _prometheus_config(api: str, gateway: str, exporter: str) -> dict[str, Any]:
    """The committed scrape jobs and rules, pointed at this test's ports, 1 s intervals."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROMETHEUS_DIR / "rules" / "*.yml")]
    config.pop("alerting", None)
    targets = {"driftloop-api": api, "pushgateway": gateway, "airflow": exporter}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets.pop(job["job_name"])]}]
    assert not targets, f"scrape jobs missing from prometheus.yml: {sorted(targets)}"
    return config


@pytest.fixture(scope="module")
def stack(
    champion: str, driftloop_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    binaries = require("prometheus", "prometheus-pushgateway")
    work = tmp_path_factory.mktemp("live-stack")
    api_port, statsd_port, exporter_port, prom_port = (free_port() for _ in range(4))
    log_url = f"sqlite:///{work / 'predictions.db'}"
    env = {
        **os.environ,
        "DRIFTLOOP_MODEL_NAME": MODEL,
        "DRIFTLOOP_PORT": str(api_port),
        "DRIFTLOOP_PREDICTION_LOG_URL": log_url,
        "DRIFTLOOP_PREDICTION_LOG_FLUSH_SECONDS": "0.2",
        "DRIFTLOOP_RATE_LIMIT_PER_SECOND": "20",
        "DRIFTLOOP_RATE_LIMIT_BURST": "500",
        "DRIFTLOOP_LOAD_RETRY_SECONDS": "0.5",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with ExitStack() as stack:
        gateway = stack.enter_context(pushgateway(work))
        api = f"http://127.0.0.1:{api_port}"
        api_process = subprocess.Popen(
            [sys.executable, "-m", "serving"],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=(work / "api.log").open("wb"),
        )
        stack.callback(api_process.wait, 30)
        stack.callback(api_process.terminate)
        exporter = [
            sys.executable,
            "-m",
            "monitoring.statsd_exporter",
            f"--statsd-port={statsd_port}",
            f"--web-port={exporter_port}",
            "--seed-dag=training_pipeline",
        ]
        stack.enter_context(
            running(exporter, f"http://127.0.0.1:{exporter_port}/metrics", work / "exporter.log")
        )
        wait_until(lambda: http_get(f"{api}/ready") is not None, "the API to load its model", 180)
        config = _prometheus_config(
            f"127.0.0.1:{api_port}", gateway.removeprefix("http://"), f"127.0.0.1:{exporter_port}"
        )
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        prometheus = f"http://127.0.0.1:{prom_port}"
        command = [
            binaries["prometheus"],
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ]
        stack.enter_context(running(command, f"{prometheus}/-/ready", work / "prometheus.log"))

        def all_up() -> bool:
            answer = _prometheus_query(prometheus, "up == 1")
            return answer["status"] == "success" and len(answer["data"]["result"]) == 3

        wait_until(all_up, "Prometheus to scrape the API, the gateway and the exporter", 60)
        yield {
            "api": api,
            "gateway": gateway,
            "prometheus": prometheus,
            "statsd_port": str(statsd_port),
            "log_url": log_url,
        }


def _traffic_round(api: str, texts: list[str], labels: list[int], feedback: bool) -> None:
    for start in range(0, len(texts), 50):
        status, body = _post(f"{api}/predict/batch", {"texts": texts[start : start + 50]})
        assert status == 200, status
        if feedback:
            for item, label in zip(body["predictions"], labels[start : start + 50], strict=True):
                assert (
                    _post(f"{api}/feedback", {"request_id": item["request_id"], "label": label})[0]
                    == 201
                )


def _airflow_round(statsd_port: str) -> None:
    env = {
        **os.environ,
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": statsd_port,
    }
    subprocess.run(
        [sys.executable, "-c", AIRFLOW_EMITS], env=env, cwd=REPO_ROOT, check=True, timeout=120
    )


def _training_pushes() -> None:
    """What training_pipeline's steps push (shapes as the steps return them)."""
    from monitoring import pipeline_metrics
    from training.tune import select_best

    pipeline_metrics.push_validation({"rows_read": 3000, "rows_quarantined": 42}, "manual__live")
    pipeline_metrics.push_features_written({"rows_written": 2950})
    results = [
        {
            "family": "logreg",
            "metric": "roc_auc",
            "best_value": 0.95,
            "n_trials": 4,
            "n_complete": 3,
            "n_pruned": 1,
            "elapsed_s": 31.0,
        },
        {
            "family": "nbsvm",
            "metric": "roc_auc",
            "best_value": 0.96,
            "n_trials": 4,
            "n_complete": 4,
            "n_pruned": 0,
            "elapsed_s": 22.0,
        },
    ]
    pipeline_metrics.push_search(select_best(results))
    gate = {
        "promoted": False,
        "champion_version": None,
        "decision": {"challenger_value": 0.95, "champion_value": 0.97},
    }
    pipeline_metrics.push_gate(gate, MODEL)


def test_every_dashboard_query_has_data_and_a_drift_day_fires_the_alert(
    stack: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines import drift
    from synthetic.reviews import generate_reviews

    monkeypatch.setenv("DRIFTLOOP_PUSHGATEWAY_URL", stack["gateway"])
    monkeypatch.setenv("DRIFTLOOP_PREDICTION_LOG_URL", stack["log_url"])
    api, prometheus = stack["api"], stack["prometheus"]
    day_start = datetime.now(UTC) - timedelta(minutes=1)

    # A day of product reviews for a champion trained on movie reviews, in two
    # rounds a few scrapes apart; half of them get feedback labels.
    products = generate_reviews(400, seed=5, domain="products")
    texts, labels = products["text"].tolist(), products["label"].astype(int).tolist()
    _traffic_round(api, texts[:150], labels[:150], feedback=True)
    _airflow_round(stack["statsd_port"])
    time.sleep(3)
    _traffic_round(api, texts[150:300], labels[150:300], feedback=False)

    # The real drift_check steps on that day, pushing to the gateway.
    time.sleep(1)  # the prediction log flushes every 0.2 s
    params = {
        "model_name": MODEL,
        "window_start": day_start.isoformat(),
        "window_end": (datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
        "thresholds": {"min_labels": 100},
        "retrain": True,
        "retrain_data_path": "new-product-reviews.csv",
    }
    window = drift.load_window(params, "scheduled__live", None, None)
    assert window["rows"] == 300 and window["labelled_rows"] == 150
    reference = drift.load_reference(MODEL, "scheduled__live")
    outcome = drift.detect_drift(window, reference, params["thresholds"])
    performance = drift.check_performance(window, reference, params["thresholds"])
    late = drift.check_late_labels(window, reference, params["thresholds"])
    assert late["days"], late
    conf = drift.decide(outcome, performance, params, "scheduled__live", late)
    assert outcome["decision"] == "drift" and conf is not None
    _training_pushes()

    def drift_alert_firing() -> bool:
        alerts = json.loads(http_get(f"{prometheus}/api/v1/alerts"))["data"]["alerts"]
        return any(
            a["labels"]["alertname"] == "DriftloopDriftDetected"
            and a["labels"].get("use_case") == "reviews"
            and a["state"] == "firing"
            for a in alerts
        )

    wait_until(drift_alert_firing, "DriftloopDriftDetected to fire", 30)

    # Fresh traffic so every rate() window holds an increase, then a burst
    # past the rate limit.
    _traffic_round(api, texts[300:], labels[300:], feedback=False)
    _airflow_round(stack["statsd_port"])
    for text in texts[:20]:
        assert _post(f"{api}/predict", {"text": text})[0] == 200
    statuses = [_post(f"{api}/predict/batch", {"texts": texts[:50]})[0] for _ in range(30)]
    assert 429 in statuses, "the burst never reached the rate limit"
    time.sleep(3)

    empty = []
    boards = sorted(DASHBOARDS.glob("*.json"))
    assert len(boards) == 3
    queries = load_dashboards_module().queries

    checked = 0
    for board in boards:
        for where, expr in queries(json.loads(board.read_text())):
            answer = _prometheus_query(prometheus, expr.replace("$__rate_interval", RATE_WINDOW))
            checked += 1
            if not _has_data(answer):
                empty.append(f"{where}: {expr} -> {json.dumps(answer)[:300]}")
    assert checked > 30
    assert not empty, "queries with no data or an error:\n" + "\n".join(empty)
