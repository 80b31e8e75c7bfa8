"""The embedded stack for tests that need the real services, started as `make demo` does.

`deploy/local/stack.py up` in a throw-away DRIFTLOOP_HOME on spare ports
(Airflow standalone, MLflow server, the API), stopped with `down` at the end.
The `embedded_stack` fixture (tests/conftest.py) starts it once per test
session for every test marked `e2e`; those tests run last so the services do
not idle through the rest of the suite. Run such tests under
`flock /tmp/driftloop-stack.lock` when several checkouts share a machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STACK = REPO / "deploy" / "local" / "stack.py"
PORTS = {
    "DRIFTLOOP_AIRFLOW_PORT": "18280",
    "DRIFTLOOP_MLFLOW_PORT": "15280",
    "DRIFTLOOP_API_PORT": "18200",
    "DRIFTLOOP_PROMETHEUS_PORT": "19290",
    "DRIFTLOOP_PUSHGATEWAY_PORT": "19291",
    "DRIFTLOOP_STATSD_PORT": "19225",
    "DRIFTLOOP_STATSD_EXPORTER_PORT": "19202",
    "DRIFTLOOP_AIRFLOW_LOG_SERVER_PORT": "18293",
    "DRIFTLOOP_AIRFLOW_TRIGGER_LOG_SERVER_PORT": "18294",
}
# A second stack in the same test session (kubernetes execution mode) runs
# beside the first one, so every port of it differs.
KUBERNETES_PORTS = {name: str(int(port) + 1000) for name, port in PORTS.items()}


def call(method: str, url: str, body: object = None, timeout: float = 60) -> Any:
    """One JSON request; the parsed answer (None when empty)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def _url(ports: dict[str, str], name: str) -> str:
    return f"http://127.0.0.1:{ports[name]}"


@dataclass(frozen=True)
class RunningStack:
    home: Path
    env: dict[str, str]
    # The default ports' URLs, also readable on the class; start_stack sets its own.
    airflow: str = _url(PORTS, "DRIFTLOOP_AIRFLOW_PORT")
    mlflow: str = _url(PORTS, "DRIFTLOOP_MLFLOW_PORT")
    api: str = _url(PORTS, "DRIFTLOOP_API_PORT")

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """`python deploy/local/stack.py <args>` against this stack."""
        return subprocess.run(
            [sys.executable, str(STACK), *args],
            env=self.env,
            cwd=REPO,
            text=True,
            capture_output=True,
            timeout=timeout,
        )

    def run_url(self, dag_id: str, run_id: str) -> str:
        return f"{self.airflow}/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 900) -> str:
        """Poll a DAG run through the REST API until it ends; its final state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = call("GET", self.run_url(dag_id, run_id))["state"]
            if state in ("success", "failed"):
                return str(state)
            time.sleep(5)
        raise AssertionError(f"{dag_id} {run_id} still running after {timeout} s")

    def wait_dags(self, dag_ids: tuple[str, ...], timeout: float = 240) -> None:
        """The DAG processor parses a fresh DAG folder a little after Airflow is healthy."""
        deadline = time.monotonic() + timeout
        missing = list(dag_ids)
        while missing and time.monotonic() < deadline:
            for dag_id in list(missing):
                try:
                    call("GET", f"{self.airflow}/api/v2/dags/{dag_id}")
                    missing.remove(dag_id)
                except urllib.error.HTTPError as exc:
                    if exc.code != 404:
                        raise
            if missing:
                time.sleep(3)
        if missing:
            raise RuntimeError(f"Airflow has not parsed {missing} after {timeout:.0f} s")

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """A task's log as text, one event per line (REST API, JSON log format)."""
        url = f"{self.run_url(dag_id, run_id)}/taskInstances/{task_id}/logs/{try_number}"
        content = call("GET", f"{url}?full_content=true")["content"]
        return "\n".join(str(item.get("event", "")) for item in content)


def start_stack(home: Path, ports: dict[str, str] | None = None, **extra_env: str) -> RunningStack:
    """`up` in `home` on `ports` (default PORTS); `extra_env` reaches every process of it."""
    ports = ports or PORTS
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "MLFLOW_TRACKING_URI", "DRIFTLOOP_TEST"))
    }
    env.update(ports, DRIFTLOOP_HOME=str(home), DRIFTLOOP_RELOAD_INTERVAL_SECONDS="5")
    env.update(extra_env)
    stack = RunningStack(
        home,
        env,
        airflow=_url(ports, "DRIFTLOOP_AIRFLOW_PORT"),
        mlflow=_url(ports, "DRIFTLOOP_MLFLOW_PORT"),
        api=_url(ports, "DRIFTLOOP_API_PORT"),
    )
    started = stack.run("up")
    if started.returncode != 0:
        stack.run("down", timeout=300)
        raise RuntimeError(f"the embedded stack did not start:\n{started.stdout}{started.stderr}")
    try:
        stack.wait_dags(("training_pipeline", "drift_check"))
    except BaseException:
        stack.run("down", timeout=300)
        raise
    return stack


def stop_stack(stack: RunningStack) -> str:
    return stack.run("down", timeout=300).stdout
