"""The server in its own process, as the lean serving image will run it.

The serving image has no Airflow, Spark, Evidently or Great Expectations. A
`sys.meta_path` finder that refuses those packages stands in for their absence:
the app must still import, load the model and answer. (Pandera probes for
pyspark at import time and must shrug off the refusal.) The same child process
prints the start-up figures.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from contracts.reviews import RAW_TEXT
from features.reviews import build_features

REPO_ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ("airflow", "pyspark", "evidently", "great_expectations")
TEXT = "Wonderful cast and a gripping plot, I loved it!"

BLOCKER = f"""
import sys

BLOCKED = {BLOCKED!r}
ATTEMPTS = set()


class RefuseHeavyPackages:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            ATTEMPTS.add(name)
            raise ImportError(f"{{name}} is not installed in the serving image")
        return None


sys.meta_path.insert(0, RefuseHeavyPackages())
"""

AS_MAIN = (
    BLOCKER
    + """
import json, runpy, signal, time


def report_and_exit(signum, frame):
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it to this handler.
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print("REPORT " + json.dumps({"refused": sorted(ATTEMPTS), "loaded_heavy": loaded}),
          file=sys.stderr, flush=True)
    raise SystemExit(0)


signal.signal(signal.SIGTERM, report_and_exit)
started = time.perf_counter()
import serving.app
print(f"IMPORT_SECONDS {time.perf_counter() - started}", file=sys.stderr, flush=True)
runpy.run_module("serving", run_name="__main__")
"""
)


def _child_env(tracking_uri: str, model_name: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "MLFLOW_TRACKING_URI": tracking_uri,
            "DRIFTLOOP_MODEL_NAME": model_name,
            "DRIFTLOOP_LOAD_RETRY_SECONDS": "0.5",
            "PROBE_TEXT": TEXT,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
        }
    )
    env.update(extra)
    return env


def _expected_probability(pipeline: Pipeline) -> float:
    features = build_features(pd.DataFrame({RAW_TEXT: [TEXT]}))
    return float(pipeline.predict_proba(features)[0, 1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _stderr_value(stderr: str, key: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith(key + " ")]
    assert lines, f"child printed no {key} line; stderr tail: {stderr[-3000:]}"
    return lines[-1][len(key) + 1 :]


@pytest.mark.slow
def test_python_m_serving_runs_without_airflow_spark_evidently_or_great_expectations(
    champion_name: str, tracking_uri: str, tiny_pipeline: Pipeline
) -> None:
    """`python -m serving` under the blocker: ready, correct prediction, 422, clean stop."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", AS_MAIN],
        env=_child_env(tracking_uri, champion_name, DRIFTLOOP_PORT=str(port)),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        status = None
        while status != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"server never became ready: {process.communicate()[1]}")
            try:
                status, _ = _http("GET", f"{base}/ready")
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.25)
        ready_seconds = time.perf_counter() - started
        _, info = _http("GET", f"{base}/model-info")
        code, answer = _http("POST", f"{base}/predict", {"text": TEXT})
        bad_code, error = _http("POST", f"{base}/predict", {"text": ""})
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()

    assert code == 200, answer
    assert answer["probability"] == _expected_probability(tiny_pipeline)
    assert info["name"] == champion_name
    assert bad_code == 422
    assert error["detail"][0]["loc"] == ["body", "text"]
    assert process.returncode == 0, stderr[-3000:]
    assert f"Uvicorn running on http://127.0.0.1:{port}" in stderr
    assert "Application shutdown complete" in stderr
    report = json.loads(_stderr_value(stderr, "REPORT"))
    assert report["loaded_heavy"] == []
    import_seconds = float(_stderr_value(stderr, "IMPORT_SECONDS"))
    print(
        f"\ncold import of serving.app: {import_seconds:.2f} s; process start -> /ready 200: "
        f"{ready_seconds:.2f} s (model load {info['load_seconds']:.2f} s); "
        f"imports refused: {', '.join(report['refused']) or 'none'}"
    )
