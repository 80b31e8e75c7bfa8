"""The whole platform in containers, exercised for real (`make test-compose`).

Builds the images (the Python base, Postgres and Redis as local stand-ins:
deploy/docker/compose.standins.yml), starts docker-compose.yml under its own
project name on spare loopback ports with two Airflow Celery workers and the
`observability` profile (Prometheus, Pushgateway, Alertmanager, the Airflow
StatsD exporter; Grafana has no stand-in and is left out), then, in order: the demo (training_pipeline through the REST API with a real login,
featurize on the Spark cluster, the api container serving the champion) with a
Celery worker killed during `tune` (the task is retried on the other worker and
its Optuna study resumed; the run succeeds), the champion through MLflow's REST
API, prediction-log rows in Postgres and shared rate-limit buckets in Redis,
drift_check over the logged traffic, a drift day (reviews of the other domain)
whose verdict fires DriftloopDriftDetected in the live Prometheus and reaches
Alertmanager, and `api` restarted under client load (the client's retries
succeed; no logged prediction is lost). The stack is
removed with its volumes in a `finally`. Timings and image sizes are written
to .driftloop/compose-test/figures.json.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "deploy" / "docker"
OUT_DIR = REPO / ".driftloop" / "compose-test"
PROJECT = os.environ.get("DRIFTLOOP_COMPOSE_TEST_PROJECT", "driftloop-citest")
PORTS = {
    "AIRFLOW_PORT": os.environ.get("DRIFTLOOP_COMPOSE_TEST_AIRFLOW_PORT", "18080"),
    "MLFLOW_PORT": os.environ.get("DRIFTLOOP_COMPOSE_TEST_MLFLOW_PORT", "15000"),
    "API_PORT": os.environ.get("DRIFTLOOP_COMPOSE_TEST_API_PORT", "18000"),
    "SPARK_UI_PORT": os.environ.get("DRIFTLOOP_COMPOSE_TEST_SPARK_PORT", "18090"),
    "PROMETHEUS_PORT": os.environ.get("DRIFTLOOP_COMPOSE_TEST_PROMETHEUS_PORT", "19090"),
    "ALERTMANAGER_PORT": os.environ.get("DRIFTLOOP_COMPOSE_TEST_ALERTMANAGER_PORT", "19093"),
}
# The test trains on this many synthetic reviews: the champion's reference
# profile is its 10% test split, and drift_check needs min_reference_rows (200,
# monitoring/config/drift.yaml) of it to compare, else the verdict is
# insufficient_data.
TRAIN_ROWS = 2500
# Observability services that have no stand-in here (no Debian package).
NOT_STARTED = {"grafana"}
FAMILIES = ["logreg", "naive_bayes"]

pytestmark = [pytest.mark.slow, pytest.mark.compose]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, DOCKER_DIR / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


make_env = _load("make_env")
demo = _load("compose_demo")


def _compose_binary() -> str:
    import compose

    return str(Path(compose.__file__).with_name("docker-compose"))


@dataclass
class Stack:
    env_file: Path
    endpoints: Any
    figures: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> list[str]:
        return [
            _compose_binary(),
            "-p",
            PROJECT,
            "--env-file",
            str(self.env_file),
            "-f",
            "docker-compose.yml",
            "-f",
            "deploy/docker/compose.standins.yml",
            "--profile",
            "observability",
        ]

    def compose(
        self, *args: str, timeout: float = 600, check: bool = True, log: Path | None = None
    ) -> subprocess.CompletedProcess:
        if log is not None:
            with log.open("a") as handle:
                result = subprocess.run(
                    [*self.base, *args],
                    cwd=REPO,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=timeout,
                )
        else:
            result = subprocess.run(
                [*self.base, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
            )
        if check and result.returncode != 0:
            where = f"see {log}" if log else (result.stdout or "") + (result.stderr or "")
            raise AssertionError(f"docker compose {' '.join(args)} failed: {where[-4000:]}")
        return result

    def psql(self, database: str, sql: str) -> list[list[str]]:
        result = self.compose(
            "exec", "-T", "postgres", "psql", "-U", "postgres", "-d", database, "-At", "-F", "\t",
            "-c", sql, timeout=60,
        )  # fmt: skip
        return [line.split("\t") for line in result.stdout.splitlines() if line]

    @property
    def prometheus(self) -> str:
        return f"http://127.0.0.1:{PORTS['PROMETHEUS_PORT']}"

    @property
    def alertmanager(self) -> str:
        return f"http://127.0.0.1:{PORTS['ALERTMANAGER_PORT']}"

    def airflow(self) -> Any:
        return demo.AirflowClient(
            self.endpoints.airflow, self.endpoints.user, self.endpoints.password
        )


def _docker(*args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=True
    )
    return result.stdout.strip()


def _write_figures(stack: Stack) -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / "figures.json"
    stack.figures["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    stack.figures["load_average"] = list(os.getloadavg())
    path.write_text(json.dumps(stack.figures, indent=2, default=str) + "\n")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    env_file = tmp_path_factory.mktemp("compose") / "stack.env"
    overrides = {
        **PORTS,
        "AIRFLOW_TASK_HEARTBEAT_TIMEOUT": "45",
        "AIRFLOW_WORKER_CONCURRENCY": "2",
        "SPARK_WORKER_CORES": "2",
    }
    ca_bundle = os.environ.get("DRIFTLOOP_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    if ca_bundle and Path(ca_bundle).is_file():
        overrides["DRIFTLOOP_CA_BUNDLE"] = ca_bundle
    env_file.write_text(make_env.render((REPO / ".env.example").read_text(), overrides))
    env_file.chmod(0o600)
    endpoints = demo.Endpoints.from_env(demo.read_env_file(env_file))
    stack = Stack(env_file, endpoints)
    build_log = OUT_DIR / "build.log"
    build_log.write_text("")
    try:
        stack.compose("down", "-v", "--remove-orphans", timeout=300, check=False)
        started = time.monotonic()
        stack.compose("build", "mlflow", "api", timeout=2400, log=build_log)
        stack.figures["build_s"] = round(time.monotonic() - started, 1)
        for name in ("pipeline", "serving"):
            image = f"driftloop/{name}:dev"
            stack.figures[f"image_{name}_bytes"] = int(
                _docker("image", "inspect", "-f", "{{.Size}}", image)
            )
        services = stack.compose("config", "--services").stdout.split()
        assert {"prometheus", "pushgateway", "alertmanager"} <= set(services)
        started = time.monotonic()
        stack.compose(
            "up",
            "-d",
            "--wait",
            "--wait-timeout",
            "1200",
            "--scale",
            "airflow-worker=2",
            *sorted(set(services) - NOT_STARTED),
            timeout=1300,
            log=build_log,
        )
        stack.figures["up_to_healthy_s"] = round(time.monotonic() - started, 1)
        yield stack
    finally:
        try:
            logs = stack.compose("logs", "--no-color", "--tail", "300", timeout=120, check=False)
            (OUT_DIR / "services.log").write_text(logs.stdout + logs.stderr)
            status = stack.compose("ps", "-a", timeout=60, check=False)
            (OUT_DIR / "ps.txt").write_text(status.stdout + status.stderr)
        finally:
            stack.compose("down", "-v", "--remove-orphans", timeout=300, check=False)
            _write_figures(stack)


class WorkerKiller:
    """`on_poll` hook: `docker kill` the Celery worker running a `tune` task mid-study.

    Waits until that task's own Optuna study holds two finished trials, so the
    kill lands after real progress that the retried attempt must keep.
    """

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.killed: dict[str, Any] = {}

    def __call__(self, run_id: str, tasks: list[dict[str, Any]]) -> None:
        if self.killed:
            return
        running = [
            t for t in tasks
            if t["task_id"] == "tune" and t.get("state") == "running" and t.get("hostname")
            and t.get("try_number") == 1
        ]  # fmt: skip
        if not running:
            return
        safe = re.sub(r"[^A-Za-z0-9_-]+", "_", run_id)
        studies = _study_trials(self.stack, safe)
        for ti in running:
            study = f"{safe}-{FAMILIES[ti['map_index']]}"
            finished = {
                n: v for n, v in studies.get(study, {}).items() if v[0] in ("COMPLETE", "PRUNED")
            }
            if len(finished) < 2:
                continue
            _docker("kill", _container_of_hostname(ti["hostname"]))
            self.killed.update(
                run_id=run_id,
                hostname=ti["hostname"],
                map_index=ti["map_index"],
                study=study,
                finished=finished,
            )
            print(f"  killed worker {ti['hostname']} running tune[{ti['map_index']}] of {study}")
            return


def test_demo_survives_a_killed_worker_and_the_api_serves_the_champion(stack: Stack) -> None:
    """The demo through Airflow + Spark + MLflow + api, with a worker killed during `tune`.

    The killed task is retried on the other worker, its Optuna study resumes
    with the trials finished before the kill, and the run still succeeds.
    """
    conf = demo.demo_conf(FAMILIES, 40, TRAIN_ROWS)
    conf["family_timeout_s"] = 45
    killer = WorkerKiller(stack)
    result = demo.run_demo(stack.endpoints, conf, timeout=2400, on_poll=killer)
    stack.figures["demo_total_s"] = round(result["total_s"], 1)
    stack.figures["demo_training_run_s"] = round(result["training_run_s"], 1)
    stack.state["demo"] = result
    version = str(result["model"]["version"])
    assert all(str(a["model_version"]) == version for a in result["answers"])
    assert {a["label_name"] for a in result["answers"]} <= {"positive", "negative"}
    # featurize ran as an application of the standalone cluster, not local[*]
    master = demo.http_json("GET", f"{stack.endpoints.spark}/json/")
    assert master["status"] == "ALIVE" and len(master["workers"]) >= 1
    assert master["completedapps"], master

    killed = killer.killed
    assert killed, "no tune task was caught mid-study: nothing was killed"
    client = stack.airflow()
    run_id = result["run_id"]
    tries = client.tries("training_pipeline", run_id, "tune", killed["map_index"])
    tries.sort(key=lambda t: t["try_number"])
    assert len(tries) >= 2, tries
    assert tries[0]["hostname"] == killed["hostname"]
    assert tries[-1]["state"] == "success" and tries[-1]["hostname"] != killed["hostname"]
    # the second attempt continued the same study: earlier trials kept, not rerun
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", run_id)
    after = _study_trials(stack, safe)[killed["study"]]
    assert {n: after[n] for n in killed["finished"]} == killed["finished"]
    attempts = stack.psql(
        "optuna",
        "SELECT a.value_json FROM study_user_attributes a JOIN studies s USING (study_id) "
        f"WHERE s.study_name = '{killed['study']}' AND a.key = 'attempts'",
    )
    assert attempts == [["2"]]
    # every other task ran on a Celery worker container of this stack
    tasks = client.task_instances("training_pipeline", run_id)
    assert all(t["state"] == "success" for t in tasks)
    assert {t["hostname"] for t in tasks} <= _worker_hostnames() | {killed["hostname"]}


def test_the_champion_through_mlflow_rest_is_what_the_api_serves(stack: Stack) -> None:
    mlflow = stack.endpoints.mlflow
    alias = demo.http_json(
        "GET",
        f"{mlflow}/api/2.0/mlflow/registered-models/alias?name=review-sentiment&alias=champion",
    )["model_version"]
    info = demo.http_json("GET", f"{stack.endpoints.api}/model-info")
    assert str(alias["version"]) == str(info["version"])
    run = demo.http_json("GET", f"{mlflow}/api/2.0/mlflow/runs/get?run_id={alias['run_id']}")
    # artifacts go through the tracking server: no container but mlflow mounts them
    assert run["run"]["info"]["artifact_uri"].startswith("mlflow-artifacts:")


def _predict(api: str, text: str, request_id: str, timeout: float = 10) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{api}/predict",
        data=json.dumps({"text": text}).encode(),
        headers={"Content-Type": "application/json", "X-Request-ID": request_id},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return dict(json.loads(response.read()))


def _logged(stack: Stack, request_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(request_ids), 500):
        chunk = request_ids[start : start + 500]
        listed = ",".join(f"'{rid}'" for rid in chunk)
        rows = stack.psql(
            "predictions",
            f"SELECT DISTINCT request_id FROM predictions WHERE request_id IN ({listed})",
        )
        found |= {row[0] for row in rows}
    return found


def _wait_logged(stack: Stack, request_ids: list[str], timeout: float = 60) -> set[str]:
    deadline = time.monotonic() + timeout
    found: set[str] = set()
    while time.monotonic() < deadline:
        found = _logged(stack, request_ids)
        if len(found) == len(set(request_ids)):
            break
        time.sleep(2)
    return found


def test_traffic_lands_in_the_postgres_prediction_log_and_redis_rate_limits(stack: Stack) -> None:
    from synthetic import generate_reviews

    texts = generate_reviews(200, seed=11)["text"].tolist()
    stack.state["traffic_start"] = datetime.now(UTC) - timedelta(minutes=1)
    _send(stack, texts, "ct")
    stack.state["traffic_end"] = datetime.now(UTC) + timedelta(seconds=5)
    owners = stack.psql(
        "predictions", "SELECT tableowner FROM pg_tables WHERE tablename = 'predictions'"
    )
    assert owners == [["predictions"]]  # written with the service's own login
    buckets = stack.compose(
        "exec",
        "-T",
        "redis",
        "redis-cli",
        "-n",
        "1",
        "--scan",
        "--pattern",
        "driftloop:ratelimit:*",
    ).stdout.split()
    assert buckets, "the API kept no rate-limit bucket in Redis"


def _send(stack: Stack, texts: list[str], prefix: str) -> list[str]:
    """POST every text to the api container; returns the request ids, all logged."""
    ids = [f"{prefix}-{uuid.uuid4().hex}" for _ in texts]
    for text, rid in zip(texts, ids, strict=True):
        assert _predict(stack.endpoints.api, text, rid)["request_id"] == rid
    found = _wait_logged(stack, ids)
    assert found == set(ids)
    return ids


def _drift_check(stack: Stack, start: datetime, end: datetime) -> tuple[dict, dict]:
    """Run drift_check over [start, end] (no retrain); its load_window and detect_drift results."""
    client = stack.airflow()
    client.wait_for_dag("drift_check")
    run_id = f"compose_drift__{uuid.uuid4().hex[:8]}"
    conf = {"window_start": start.isoformat(), "window_end": end.isoformat(), "retrain": False}
    client.trigger("drift_check", conf, run_id)
    assert client.wait_for_run("drift_check", run_id, timeout=900) == "success"
    base = f"/api/v2/dags/drift_check/dagRuns/{run_id}/taskInstances"
    window = client.call("GET", f"{base}/load_window/xcomEntries/return_value")["value"]
    drift = client.call("GET", f"{base}/detect_drift/xcomEntries/return_value")["value"]
    if isinstance(window, str):
        window, drift = json.loads(window), json.loads(drift)
    return window, drift


def _alerts(stack: Stack, state: str = "firing") -> dict[str, list[dict[str, Any]]]:
    """Alerts of the live Prometheus in `state`, by name."""
    found: dict[str, list[dict[str, Any]]] = {}
    for alert in demo.http_json("GET", f"{stack.prometheus}/api/v1/alerts")["data"]["alerts"]:
        if alert["state"] == state:
            found.setdefault(alert["labels"]["alertname"], []).append(alert)
    return found


def _prom_query(stack: Stack, query: str) -> list[dict[str, Any]]:
    url = f"{stack.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    answer = demo.http_json("GET", url)
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def _wait_for(what: str, probe: Any, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(5)


def test_the_observability_profile_scrapes_every_target(stack: Stack) -> None:
    """Prometheus (stand-in of the named version) scrapes the API, the Pushgateway and
    Airflow's StatsD exporter, loads the alert rules and reaches Alertmanager."""
    build = demo.http_json("GET", f"{stack.prometheus}/api/v1/status/buildinfo")["data"]
    image = stack.compose("config", "--images").stdout.split()
    version = build["version"].split("+")[0]  # Debian's "2.42.0+ds"
    assert any(i.endswith(f":v{version}-standin") for i in image), (build, image)

    def all_up() -> dict[str, str] | None:
        targets = demo.http_json("GET", f"{stack.prometheus}/api/v1/targets")["data"]
        health = {t["labels"]["job"]: t["health"] for t in targets["activeTargets"]}
        return health if set(health.values()) == {"up"} else None

    health = _wait_for("every scrape target up", all_up, timeout=120)
    assert set(health) == {"driftloop-api", "pushgateway", "airflow"}, health
    groups = demo.http_json("GET", f"{stack.prometheus}/api/v1/rules")["data"]["groups"]
    rules = {r["name"] for g in groups for r in g["rules"] if r["type"] == "alerting"}
    assert "DriftloopDriftDetected" in rules and len(rules) >= 10, rules
    managers = demo.http_json("GET", f"{stack.prometheus}/api/v1/alertmanagers")["data"]
    assert [m["url"] for m in managers["activeAlertmanagers"]], managers
    # Airflow's own metrics arrive through StatsD, the API's through /metrics.
    assert _prom_query(stack, "airflow_scheduler_heartbeat_total")
    assert _prom_query(stack, 'up{job="driftloop-api"} == 1')
    stack.figures["prometheus_version"] = build["version"]


def test_drift_check_reads_the_logged_traffic(stack: Stack) -> None:
    window, drift = _drift_check(stack, stack.state["traffic_start"], stack.state["traffic_end"])
    assert window["rows"] >= 200
    assert drift["decision"] != "insufficient_data", drift
    assert drift["mlflow_run_id"]
    stack.figures["in_domain_drift_decision"] = drift["decision"]
    stack.state["in_domain_decision"] = drift["decision"]


def test_a_drift_day_fires_the_drift_alert_in_the_live_prometheus(stack: Stack) -> None:
    """Reviews of the other domain: drift_check votes drift, pushes the verdict, the
    live Prometheus fires DriftloopDriftDetected and Alertmanager receives it."""
    from synthetic import generate_reviews

    # The verdict of the in-domain day is pushed already: no drift alert yet.
    if stack.state.get("in_domain_decision") == "no_drift":
        _wait_for(
            "the in-domain verdict in Prometheus",
            lambda: _prom_query(stack, 'driftloop_drift_decision{decision="no_drift"} == 1'),
        )
        time.sleep(35)  # a scrape and a rule evaluation after it
        assert "DriftloopDriftDetected" not in _alerts(stack, "firing")
        assert "DriftloopDriftDetected" not in _alerts(stack, "pending")
    while datetime.now(UTC) <= stack.state["traffic_end"]:
        time.sleep(1)
    start = datetime.now(UTC)
    texts = generate_reviews(200, seed=12, domain="products")["text"].tolist()
    _send(stack, texts, "dd")
    window, drift = _drift_check(stack, start, datetime.now(UTC) + timedelta(seconds=5))
    assert window["rows"] == 200
    assert drift["decision"] == "drift", drift
    started = time.monotonic()
    firing = _wait_for(
        "DriftloopDriftDetected firing",
        lambda: _alerts(stack, "firing").get("DriftloopDriftDetected"),
    )
    stack.figures["drift_alert_after_check_s"] = round(time.monotonic() - started, 1)
    assert firing[0]["labels"]["use_case"] and firing[0]["labels"]["severity"] == "ticket"
    assert firing[0]["annotations"]["runbook_url"].endswith("#driftloopdriftdetected")

    def in_alertmanager() -> list[str]:
        alerts = demo.http_json("GET", f"{stack.alertmanager}/api/v2/alerts")
        return [a["labels"]["alertname"] for a in alerts]

    received = _wait_for(
        "DriftloopDriftDetected in Alertmanager",
        lambda: "DriftloopDriftDetected" in in_alertmanager() and in_alertmanager(),
        timeout=120,
    )
    stack.figures["alerts_firing"] = sorted(_alerts(stack, "firing"))
    stack.figures["alerts_in_alertmanager"] = sorted(set(received))


def _study_trials(stack: Stack, prefix: str) -> dict[str, dict[int, tuple[str, str]]]:
    rows = stack.psql(
        "optuna",
        "SELECT s.study_name, t.number, t.state, COALESCE(v.value::text, '') FROM trials t "
        "JOIN studies s ON s.study_id = t.study_id "
        "LEFT JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0 "
        f"WHERE s.study_name LIKE '{prefix}%'",
    )
    studies: dict[str, dict[int, tuple[str, str]]] = {}
    for name, number, state, value in rows:
        studies.setdefault(name, {})[int(number)] = (state, value)
    return studies


def _worker_ids() -> list[str]:
    return _docker(
        "ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}",
        "--filter", "label=com.docker.compose.service=airflow-worker",
    ).split()  # fmt: skip


def _worker_hostnames() -> set[str]:
    return {_docker("inspect", "-f", "{{.Config.Hostname}}", cid) for cid in _worker_ids()}


def _container_of_hostname(hostname: str) -> str:
    for cid in _worker_ids():
        if _docker("inspect", "-f", "{{.Config.Hostname}}", cid) == hostname:
            return cid
    raise AssertionError(f"no running airflow-worker container has hostname {hostname!r}")


def test_restarting_the_api_under_load_loses_no_request_and_no_logged_prediction(
    stack: Stack,
) -> None:
    api = stack.endpoints.api
    stop = threading.Event()
    outcomes: list[tuple[str, bool, int]] = []  # request id, succeeded, attempts

    def client() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            rid = f"rs-{uuid.uuid4().hex}"
            text = f"Restart test review {n}: a fine film with a dull ending."
            for attempt in range(1, 121):
                try:
                    _predict(api, text, rid, timeout=15)
                    outcomes.append((rid, True, attempt))
                    break
                except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                    time.sleep(0.5)  # refused, reset or 503 while the server restarts
            else:
                outcomes.append((rid, False, 120))

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    time.sleep(3)
    started = time.monotonic()
    stack.compose("restart", "api", timeout=180)
    demo.wait_model_ready(api, timeout=180)
    restart_s = time.monotonic() - started
    time.sleep(3)
    stop.set()
    thread.join(timeout=120)
    assert not thread.is_alive()
    failed = [rid for rid, ok, _ in outcomes if not ok]
    retried = [rid for rid, ok, attempts in outcomes if ok and attempts > 1]
    assert outcomes and not failed
    assert retried, "no request needed a retry: the restart did not interrupt the client"
    ids = [rid for rid, ok, _ in outcomes if ok]
    assert _wait_logged(stack, ids) == set(ids)
    stack.figures["api_restart"] = {
        "requests": len(ids),
        "retried": len(retried),
        "restart_to_ready_s": round(restart_s, 1),
    }
