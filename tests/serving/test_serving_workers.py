"""`python -m serving` as a real process: SIGTERM loses no prediction, several workers share one log.

These start the server the way a deployment does (uvicorn, real sockets,
signals), with the prediction log's flush interval set long, so rows are
still queued in memory when SIGTERM arrives: only the shutdown flush can
have written them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from serving.prediction_log import read_predictions

REPO_ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["Brilliant film, loved it!", "Dreadful. Avoid.", "Not bad at all <br /> really", "meh"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(url: str, body: dict[str, Any], timeout: float = 30) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _get(url: str, timeout: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@contextmanager
def _server(
    tracking_uri: str, model_name: str, log_url: str, **env: str
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    child_env = dict(os.environ)
    child_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    child_env.update(
        {
            "MLFLOW_TRACKING_URI": tracking_uri,
            "DRIFTLOOP_MODEL_NAME": model_name,
            "DRIFTLOOP_PORT": str(port),
            "DRIFTLOOP_LOAD_RETRY_SECONDS": "0.5",
            "DRIFTLOOP_PREDICTION_LOG_URL": log_url,
            "DRIFTLOOP_PREDICTION_LOG_FLUSH_SECONDS": "10",
            "DRIFTLOOP_GC_FREEZE": "true",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
            ),
            **env,
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "serving"],
        env=child_env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"server never became ready: {process.communicate()[1][-3000:]}"
                )
            try:
                if _get(f"{base}/ready")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.25)
        yield base, process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
        raise AssertionError(f"no clean stop after SIGTERM: {stderr[-3000:]}") from None
    return stderr


@pytest.mark.slow
def test_sigterm_under_load_flushes_every_answered_prediction(
    champion_name: str, tracking_uri: str, tmp_path: Path
) -> None:
    log_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    started = datetime.now(UTC)
    answered: list[str] = []
    refused: list[str] = []
    with _server(tracking_uri, champion_name, log_url) as (base, process):

        def client(slot: int) -> None:
            index = slot
            while True:
                try:
                    status, body = _post(
                        f"{base}/predict", {"text": TEXTS[index % 4] + f" #{index}"}
                    )
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    return
                index += 4
                (answered if status == 200 else refused).append(body.get("request_id", str(body)))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        while len(answered) < 60:
            time.sleep(0.01)
        stderr = _stop(process)
        for thread in threads:
            thread.join(timeout=60)
    frame = read_predictions(log_url, started, datetime.now(UTC) + timedelta(seconds=1))

    assert process.returncode == 0, stderr[-3000:]
    assert refused == []
    assert sorted(frame["request_id"]) == sorted(answered)
    assert "Application shutdown complete" in stderr
    print(f"\n{len(answered)} answered before/while stopping, {len(frame)} rows after SIGTERM")


@pytest.mark.slow
def test_two_workers_share_metrics_and_the_prediction_log(
    champion_name: str, tracking_uri: str, tmp_path: Path
) -> None:
    log_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    started = datetime.now(UTC)
    with _server(tracking_uri, champion_name, log_url, DRIFTLOOP_WORKERS="2") as (base, process):
        pids: set[str] = set()
        deadline = time.monotonic() + 120
        while len(pids) < 2:  # both workers loaded their model (each reports its own pid)
            assert time.monotonic() < deadline, "the second worker never reported a model"
            _, metrics = _get(f"{base}/metrics")
            pids = set(re.findall(r'driftloop_model_info\{[^}]*pid="(\d+)"[^}]*\} 1\.0', metrics))
            time.sleep(0.2)
        ids = [
            _post(f"{base}/predict", {"text": f"{TEXTS[i % 4]} {i}"})[1]["request_id"]
            for i in range(40)
        ]
        # A request is counted once its response has been sent, so the last one may land in
        # the counter just after the client read it: wait briefly for 40, then require 40.
        counted: re.Match[str] | None = None
        deadline = time.monotonic() + 10
        while True:
            _, metrics = _get(f"{base}/metrics")
            counted = re.search(
                r'^driftloop_http_requests_total\{method="POST",route="/predict",status="200"\}'
                r" (\S+)$",
                metrics,
                flags=re.MULTILINE,
            )
            if (counted and float(counted.group(1)) >= 40.0) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        stderr = _stop(process)
    frame = read_predictions(log_url, started, datetime.now(UTC) + timedelta(seconds=1))

    assert process.returncode == 0, stderr[-3000:]
    assert counted and float(counted.group(1)) == 40.0, metrics[:2000]
    assert sorted(frame["request_id"]) == sorted(ids)
