"""The demo on the container stack: train through Airflow's REST API, predict through the API.

    python deploy/docker/compose_demo.py [--env-file .env] [--families logreg nbsvm] [--n-trials 4]

Logs in to Airflow as the admin of the env file (a real login: the stack has
no all-admins mode), triggers `training_pipeline` on synthetic reviews, prints
every task's state changes until the run ends, waits for the `api` container to
load the champion the run promoted, and prints two predictions and the URLs.
Standard library only; `AirflowClient` is also what tests/compose drives.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES = (
    "An absolute delight from start to finish, I loved every minute!",
    "Dull, badly acted and far too long. I want those two hours back.",
)


class DemoError(RuntimeError):
    """A service refused, or a run did not succeed; the message says where to look."""


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a compose env file (comments and blanks skipped)."""
    if not path.exists():
        raise DemoError(f"{path} does not exist: run `make compose-env` (or copy .env.example)")
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


@dataclass(frozen=True)
class Endpoints:
    """Where the published services answer on the host, from the env file."""

    airflow: str
    mlflow: str
    api: str
    spark: str
    user: str
    password: str

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Endpoints:
        host = env.get("DRIFTLOOP_BIND_ADDRESS", "127.0.0.1")
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return cls(
            airflow=f"http://{host}:{env.get('AIRFLOW_PORT', '8080')}",
            mlflow=f"http://{host}:{env.get('MLFLOW_PORT', '5000')}",
            api=f"http://{host}:{env.get('API_PORT', '8000')}",
            spark=f"http://{host}:{env.get('SPARK_UI_PORT', '8090')}",
            user=env.get("AIRFLOW_ADMIN_USER", "admin"),
            password=env["AIRFLOW_ADMIN_PASSWORD"],
        )


def http_json(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def _retry_transient(send: Callable[[], Any], attempts: int) -> Any:
    """`send()`, repeated on time-outs, refused connections and 5xx answers."""
    for attempt in range(1, attempts + 1):
        try:
            return send()
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or attempt == attempts:
                raise
        except (TimeoutError, urllib.error.URLError, ConnectionError):
            if attempt == attempts:
                raise
        time.sleep(min(2 * attempt, 10))
    raise AssertionError("unreachable")


class AirflowClient:
    """Airflow 3's public REST API with a JWT from /auth/token (renewed on 401)."""

    def __init__(self, base_url: str, user: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.user = user
        self.password = password
        self._token: str | None = None

    # A busy API server (one process on a loaded machine) times out or answers
    # 5xx now and then: reads and the login are retried this many times.
    ATTEMPTS = 6

    def login(self) -> str:
        def post() -> Any:
            return http_json(
                "POST",
                f"{self.base_url}/auth/token",
                {"username": self.user, "password": self.password},
                timeout=60,
            )

        try:
            answer = _retry_transient(post, self.ATTEMPTS)
        except urllib.error.HTTPError as exc:
            raise DemoError(
                f"Airflow refused the login of {self.user!r} ({exc.code}): check "
                "AIRFLOW_ADMIN_USER / AIRFLOW_ADMIN_PASSWORD in the env file"
            ) from exc
        self._token = str(answer["access_token"])
        return self._token

    def call(self, method: str, path: str, body: Any = None) -> Any:
        for attempt in (1, 2):
            token = self._token or self.login()

            def send(token: str = token) -> Any:
                return http_json(
                    method,
                    f"{self.base_url}{path}",
                    body,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=60,
                )

            try:
                # Only reads are repeated blindly; trigger() makes its POST idempotent itself.
                return _retry_transient(send, self.ATTEMPTS if method == "GET" else 1)
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and attempt == 1:
                    self._token = None  # expired: log in again once
                    continue
                raise
        raise AssertionError("unreachable")

    def wait_for_dag(self, dag_id: str, timeout: float = 300) -> None:
        """The DAG processor parses the DAG folder shortly after start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.call("GET", f"/api/v2/dags/{dag_id}")
                return
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    raise
            time.sleep(3)
        raise DemoError(f"Airflow has not parsed DAG {dag_id!r} after {timeout:.0f} s")

    def trigger(self, dag_id: str, conf: dict[str, Any], run_id: str) -> str:
        """Start a run with a chosen id, so a retried request finds it instead of a twin."""
        for attempt in range(1, 6):
            try:
                self.call(
                    "POST",
                    f"/api/v2/dags/{dag_id}/dagRuns",
                    {"dag_run_id": run_id, "logical_date": None, "conf": conf},
                )
                return run_id
            except urllib.error.HTTPError as exc:
                if exc.code == 409:  # an earlier attempt that timed out created it
                    return run_id
                if exc.code < 500 or attempt == 5:
                    raise DemoError(
                        f"Airflow refused to trigger {dag_id}: {exc.code} {exc.read()!r}"
                    ) from exc
            except (TimeoutError, urllib.error.URLError):
                if attempt == 5:
                    raise
            time.sleep(3)
        return run_id

    def _run_path(self, dag_id: str, run_id: str) -> str:
        return f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.call("GET", self._run_path(dag_id, run_id)))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"{self._run_path(dag_id, run_id)}/taskInstances?limit=100"
        return list(self.call("GET", path)["task_instances"])

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> list[dict[str, Any]]:
        """Every attempt of one task instance (hostname, state, try_number)."""
        path = f"{self._run_path(dag_id, run_id)}/taskInstances/{task_id}/{map_index}/tries"
        return list(self.call("GET", path)["task_instances"])

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float = 2400,
        on_poll: Callable[[list[dict[str, Any]]], None] | None = None,
        poll_seconds: float = 3,
    ) -> str:
        """Poll until the run ends, printing each task's state changes; returns the state."""
        seen: dict[str, str] = {}
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                run = self.run(dag_id, run_id)
                tasks = self.task_instances(dag_id, run_id)
            except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
                print(f"  (Airflow did not answer: {exc}; retrying)", flush=True)
                time.sleep(poll_seconds)
                continue
            for ti in sorted(tasks, key=lambda t: (t.get("start_date") or "9999", t["task_id"])):
                index = ti.get("map_index", -1)
                key = (
                    f"{ti['task_id']}[{index}]"
                    if index is not None and index >= 0
                    else ti["task_id"]
                )
                state = ti.get("state") or "none"
                if state == "none" and key not in seen:
                    continue  # not scheduled yet: nothing to say
                if seen.get(key) != state:
                    seen[key] = state
                    where = f" on {ti['hostname']}" if ti.get("hostname") else ""
                    print(
                        f"  [{time.monotonic() - started:6.0f} s] {key}: {state}"
                        f" (try {ti.get('try_number', '?')}{where})",
                        flush=True,
                    )
            if on_poll is not None:
                on_poll(tasks)
            if run["state"] in ("success", "failed"):
                return str(run["state"])
            time.sleep(poll_seconds)
        raise DemoError(f"{dag_id} run {run_id} still running after {timeout:.0f} s")


def wait_model_ready(api_url: str, timeout: float = 300) -> dict[str, Any]:
    """Block until the API has loaded a model; returns /model-info."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{api_url}/ready", timeout=5) as response:
                if response.status == 200:
                    return dict(http_json("GET", f"{api_url}/model-info"))
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(2)
    raise DemoError(
        f"the API at {api_url} loaded no model within {timeout:.0f} s: "
        "see `docker compose logs api`"
    )


def predict_when_loaded(api_url: str, text: str, timeout: float = 120) -> dict[str, Any]:
    """POST /predict, retrying 503s: each uvicorn worker loads the champion on its own,
    so one worker can answer /ready while the other is still loading."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return dict(http_json("POST", f"{api_url}/predict", {"text": text}))
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or time.monotonic() > deadline:
                raise
        time.sleep(1)


def demo_conf(families: list[str] | None, n_trials: int | None, rows: int | None) -> dict[str, Any]:
    conf: dict[str, Any] = {"data_path": "", "source": "synthetic", "reason": "compose demo"}
    if families:
        conf["families"] = families
    if n_trials:
        conf["n_trials"] = n_trials
    if rows:
        conf["synthetic_rows"] = rows
    return conf


def run_demo(
    endpoints: Endpoints,
    conf: dict[str, Any],
    timeout: float,
    on_poll: Callable[[str, list[dict[str, Any]]], None] | None = None,
) -> dict[str, Any]:
    """Train through Airflow, then predict through the API; returns figures for the caller.

    `on_poll(run_id, task_instances)` is called on every poll of the run (tests
    inject faults there).
    """
    started = time.monotonic()
    airflow = AirflowClient(endpoints.airflow, endpoints.user, endpoints.password)
    airflow.login()
    print(f"logged in to Airflow at {endpoints.airflow} as {endpoints.user}")
    airflow.wait_for_dag("training_pipeline")
    run_id = f"compose_demo__{time.strftime('%Y%m%dT%H%M%S')}"
    airflow.trigger("training_pipeline", conf, run_id)
    print(f"triggered training_pipeline: run {run_id}")
    state = airflow.wait_for_run(
        "training_pipeline",
        run_id,
        timeout=timeout,
        on_poll=None if on_poll is None else (lambda tasks: on_poll(run_id, tasks)),
    )
    if state != "success":
        raise DemoError(
            f"training_pipeline run {run_id} ended {state}: task logs in the Airflow UI at "
            f"{endpoints.airflow}/dags/training_pipeline"
        )
    trained_s = time.monotonic() - started
    info = wait_model_ready(endpoints.api)
    print()
    answers = []
    for text in SAMPLES:
        answer = predict_when_loaded(endpoints.api, text)
        answers.append(answer)
        print(f"  POST /predict {text!r}")
        print(
            f"    -> {answer['label_name']} (p={answer['probability']:.3f}, "
            f"model version {answer['model_version']})"
        )
    total_s = time.monotonic() - started
    quoted = urllib.parse.quote(run_id, safe="")
    print(
        f"""
compose demo finished in {total_s:.0f} s (training run {trained_s:.0f} s).
  Airflow UI   {endpoints.airflow}/dags/training_pipeline/runs/{quoted}
               (log in as {endpoints.user}; the password is AIRFLOW_ADMIN_PASSWORD in the env file)
  MLflow UI    {endpoints.mlflow}/#/models/{info.get("name", "")}
  Spark UI     {endpoints.spark}
  API docs     {endpoints.api}/docs   (serving {info.get("name")} v{info.get("version")}, alias champion)
  Try          curl -s -X POST {endpoints.api}/predict -H 'content-type: application/json' \\
                 -d '{{"text": "What a wonderful film"}}'
  Stop         make compose-down
"""
    )
    return {
        "run_id": run_id,
        "training_run_s": trained_s,
        "total_s": total_s,
        "model": info,
        "answers": answers,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env-file", type=Path, default=REPO_ROOT / ".env")
    parser.add_argument("--families", nargs="*", default=None, help="default: the DAG's Param")
    parser.add_argument("--n-trials", type=int, default=None, help="trials per family")
    parser.add_argument("--synthetic-rows", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=2400, help="seconds for the run")
    args = parser.parse_args(argv)
    try:
        endpoints = Endpoints.from_env(read_env_file(args.env_file))
        run_demo(
            endpoints, demo_conf(args.families, args.n_trials, args.synthetic_rows), args.timeout
        )
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
