"""The loop against a real `airflow standalone`, MLflow server and API on 127.0.0.1.

Uses the embedded stack the test session starts (tests/stack.py),
trains a champion through Airflow's REST API, sends a day of product reviews
through the HTTP API, triggers `drift_check` through the REST API and requires
the `training_pipeline` run it triggers to succeed.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime

import pytest

from synthetic import generate_reviews
from tests.stack import PORTS, RunningStack, call

AIRFLOW = RunningStack.airflow
API = RunningStack.api

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SEARCH = {"families": ["logreg", "naive_bayes"], "n_trials": 3, "family_timeout_s": 120}


def test_drift_check_triggers_a_successful_retrain(embedded_stack: RunningStack) -> None:
    run, home = embedded_stack.run, embedded_stack.home
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
            if call("GET", f"{API}/model-info")["version"]:
                break
        except OSError:
            pass
        time.sleep(3)

    new_data = home / "landed" / "products.csv"
    new_data.parent.mkdir(parents=True)
    generate_reviews(1500, seed=8, domain="products").to_csv(new_data, index=False)
    start = datetime.now(UTC).isoformat()
    for text in generate_reviews(250, seed=9, domain="products")["text"]:
        call("POST", f"{API}/predict", {"text": text})
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

    runs = call("GET", f"{AIRFLOW}/api/v2/dags/training_pipeline/dagRuns")["dag_runs"]
    retrains = [r for r in runs if str(r["conf"].get("reason", "")).startswith("drift_check")]
    assert len(retrains) == 1, runs
    assert retrains[0]["conf"]["data_path"] == str(new_data)
    assert embedded_stack.wait_run("training_pipeline", retrains[0]["dag_run_id"]) == "success"

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
