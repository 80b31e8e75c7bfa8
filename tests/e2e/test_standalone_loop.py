"""The loop against a real `airflow standalone`, MLflow server and API on 127.0.0.1.

Starts the embedded stack in a throw-away DRIFTLOOP_HOME on spare ports,
trains a champion through Airflow's REST API, sends a day of product reviews
through the HTTP API, triggers `drift_check` through the REST API and requires
the `training_pipeline` run it triggers to succeed. Stops everything it started.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from synthetic import generate_reviews

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "deploy" / "local" / "stack.py"
PORTS = {
    "DRIFTLOOP_AIRFLOW_PORT": "18080",
    "DRIFTLOOP_MLFLOW_PORT": "15000",
    "DRIFTLOOP_API_PORT": "18000",
    "DRIFTLOOP_PROMETHEUS_PORT": "19090",
    "DRIFTLOOP_PUSHGATEWAY_PORT": "19091",
    "DRIFTLOOP_STATSD_PORT": "19125",
    "DRIFTLOOP_STATSD_EXPORTER_PORT": "19102",
}
SEARCH = {"families": ["logreg", "naive_bayes"], "n_trials": 3, "family_timeout_s": 120}
AIRFLOW = f"http://127.0.0.1:{PORTS['DRIFTLOOP_AIRFLOW_PORT']}"
API = f"http://127.0.0.1:{PORTS['DRIFTLOOP_API_PORT']}"


def _call(method: str, url: str, body: object = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("e2e-home")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "MLFLOW_TRACKING_URI", "DRIFTLOOP_TEST"))
    }
    env.update(PORTS, DRIFTLOOP_HOME=str(home), DRIFTLOOP_RELOAD_INTERVAL_SECONDS="5")
    run = lambda *args, timeout=900: subprocess.run(  # noqa: E731
        [sys.executable, str(STACK), *args],
        env=env,
        cwd=REPO,
        text=True,
        capture_output=True,
        timeout=timeout,
    )
    started = run("up")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield run, home
    finally:
        stopped = run("down", timeout=300)
        print(stopped.stdout)


def _wait_run(dag_id: str, run_id: str, timeout: float = 900) -> str:
    url = f"{AIRFLOW}/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _call("GET", url)["state"]
        if state in ("success", "failed"):
            return state
        time.sleep(5)
    raise AssertionError(f"{dag_id} {run_id} still running after {timeout} s")


def test_drift_check_triggers_a_successful_retrain(stack) -> None:
    run, home = stack
    trained = run(
        "trigger",
        "training_pipeline",
        json.dumps({"data_path": "", "synthetic_rows": 2500, "reason": "e2e seed", **SEARCH}),
        "--wait",
    )
    assert trained.returncode == 0, trained.stdout + trained.stderr

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if _call("GET", f"{API}/model-info")["version"]:
                break
        except OSError:
            pass
        time.sleep(3)

    new_data = home / "landed" / "products.csv"
    new_data.parent.mkdir(parents=True)
    generate_reviews(1500, seed=8, domain="products").to_csv(new_data, index=False)
    start = datetime.now(UTC).isoformat()
    for text in generate_reviews(250, seed=9, domain="products")["text"]:
        _call("POST", f"{API}/predict", {"text": text})
    time.sleep(3)  # the prediction log writes in the background
    end = datetime.now(UTC).isoformat()

    conf = {
        "window_start": start,
        "window_end": end,
        "thresholds": {"min_rows": 100},
        "retrain_data_path": str(new_data),
        "retrain_source": "synthetic",
        "retrain_conf": SEARCH,
    }
    checked = run("trigger", "drift_check", json.dumps(conf), "--wait")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "trigger_retrain: success" in checked.stdout, checked.stdout

    runs = _call("GET", f"{AIRFLOW}/api/v2/dags/training_pipeline/dagRuns")["dag_runs"]
    retrains = [r for r in runs if str(r["conf"].get("reason", "")).startswith("drift_check")]
    assert len(retrains) == 1, runs
    assert retrains[0]["conf"]["data_path"] == str(new_data)
    assert _wait_run("training_pipeline", retrains[0]["dag_run_id"]) == "success"

    # Where the Pushgateway is installed, `up` started it and the DAG runs pushed to it.
    if shutil.which("prometheus-pushgateway"):
        gateway = f"http://127.0.0.1:{PORTS['DRIFTLOOP_PUSHGATEWAY_PORT']}/metrics"
        with urllib.request.urlopen(gateway, timeout=10) as response:
            pushed = response.read().decode()
        drifted = r'^driftloop_drift_decision\{decision="drift",[^}]*use_case="reviews"\} 1$'
        assert re.search(drifted, pushed, flags=re.MULTILINE), pushed[:3000]
        assert re.search(r"^driftloop_retrain_triggered\{[^}]*\} 1$", pushed, flags=re.MULTILINE)
        assert "driftloop_gate_promoted{" in pushed
        assert "driftloop_training_rows_written{" in pushed

    # ... and Prometheus scraped the API, the gateway and Airflow's StatsD metrics.
    if shutil.which("prometheus"):
        prometheus = f"http://127.0.0.1:{PORTS['DRIFTLOOP_PROMETHEUS_PORT']}/api/v1/query?query="
        for expr in (
            'up{job="driftloop-api"} == 1',
            'driftloop_drift_decision{decision="drift"} == 1',
            'airflow_dagrun_duration_seconds_count{dag_id="training_pipeline",state="success"} > 0',
            "airflow_scheduler_heartbeat_total > 0",
        ):
            with urllib.request.urlopen(prometheus + urllib.parse.quote(expr), timeout=10) as r:
                assert json.loads(r.read())["data"]["result"], expr
