"""The embedded stack on one machine: Airflow standalone, MLflow server, the API.

    python deploy/local/stack.py up        # start what is not running, wait until healthy
    python deploy/local/stack.py trigger training_pipeline '{"data_path": ""}' --wait
    python deploy/local/stack.py status
    python deploy/local/stack.py down      # stop everything this script started, by PID

State (SQLite databases, artifacts, logs, PID files) lives under DRIFTLOOP_HOME
(default `.driftloop/`). Every process is started in its own session so `down`
can stop its whole process group; Airflow gets SIGINT (its clean shutdown),
the others SIGTERM, and anything left after a grace period gets SIGKILL.

Only the standard library is used here, so it runs before anything is imported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
HOME = Path(os.environ.get("DRIFTLOOP_HOME", REPO_ROOT / ".driftloop")).resolve()
VENV_BIN = Path(sys.executable).parent

AIRFLOW_PORT = int(os.environ.get("DRIFTLOOP_AIRFLOW_PORT", "8080"))
MLFLOW_PORT = int(os.environ.get("DRIFTLOOP_MLFLOW_PORT", "5000"))
API_PORT = int(os.environ.get("DRIFTLOOP_API_PORT", "8000"))
# Airflow's task and triggerer log servers (its defaults): two stacks on one
# machine need different ones, or the second stack's tasks cannot serve logs.
LOG_SERVER_PORT = int(os.environ.get("DRIFTLOOP_AIRFLOW_LOG_SERVER_PORT", "8793"))
TRIGGER_LOG_SERVER_PORT = int(os.environ.get("DRIFTLOOP_AIRFLOW_TRIGGER_LOG_SERVER_PORT", "8794"))
AIRFLOW_URL = f"http://127.0.0.1:{AIRFLOW_PORT}"
MLFLOW_URL = f"http://127.0.0.1:{MLFLOW_PORT}"
API_URL = f"http://127.0.0.1:{API_PORT}"


class StackError(RuntimeError):
    """A service did not come up, or a run did not succeed."""


INHERITED_MLFLOW_VARS = frozenset(
    {"MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"}
)


def stack_env() -> dict[str, str]:
    """Environment shared by every process of the embedded stack.

    MLflow settings inherited from the caller's shell (another registry, an
    active experiment or run) are dropped: every process of the stack talks to
    the stack's own MLflow server, or a champion resolved there would be
    downloaded from somewhere else.
    """
    env = {key: value for key, value in os.environ.items() if key not in INHERITED_MLFLOW_VARS}
    env.update(
        {
            "DRIFTLOOP_HOME": str(HOME),
            "PATH": os.pathsep.join([str(VENV_BIN), env.get("PATH", "")]),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "MLFLOW_TRACKING_URI": MLFLOW_URL,
            "MLFLOW_REGISTRY_URI": MLFLOW_URL,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "GX_ANALYTICS_ENABLED": "false",
            "AIRFLOW_HOME": str(HOME / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "airflow" / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": os.environ.get("AIRFLOW__CORE__PARALLELISM", "4"),
            # A task pod's whole spec is a templated field: Airflow's default of 4096
            # characters cuts it short in Rendered Templates. The Helm values use 65536.
            "AIRFLOW__CORE__MAX_TEMPLATED_FIELD_LENGTH": os.environ.get(
                "AIRFLOW__CORE__MAX_TEMPLATED_FIELD_LENGTH", "65536"
            ),
            # Local demo only: every visitor is admin, no login. Never in production.
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": os.environ.get(
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True"
            ),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(AIRFLOW_PORT),
            "AIRFLOW__API__BASE_URL": AIRFLOW_URL,
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(LOG_SERVER_PORT),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(TRIGGER_LOG_SERVER_PORT),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "15",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
            # The API polls the champion alias this often (a cheap registry call);
            # the demo wants a promotion to show up within seconds.
            "DRIFTLOOP_RELOAD_INTERVAL_SECONDS": os.environ.get(
                "DRIFTLOOP_RELOAD_INTERVAL_SECONDS", "5"
            ),
            "DRIFTLOOP_PORT": str(API_PORT),
            "DRIFTLOOP_HOST": "127.0.0.1",
        }
    )
    return env


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]
    health_url: str
    stop_signal: int
    start_timeout: float

    @property
    def pid_file(self) -> Path:
        return HOME / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return HOME / "logs" / f"{self.name}.log"


def services() -> list[Service]:
    mlflow_dir = HOME / "mlflow"
    return [
        Service(
            "mlflow",
            [
                str(VENV_BIN / "mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{mlflow_dir / 'mlflow.db'}",
                "--artifacts-destination",
                str(mlflow_dir / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(MLFLOW_PORT),
                "--workers",
                "1",
            ],
            f"{MLFLOW_URL}/health",
            signal.SIGTERM,
            180,
        ),
        Service(
            "airflow",
            [str(VENV_BIN / "airflow"), "standalone"],
            f"{AIRFLOW_URL}/api/v2/monitor/health",
            signal.SIGINT,
            300,
        ),
        Service(
            "api",
            [sys.executable, "-m", "serving"],
            f"{API_URL}/health",
            signal.SIGTERM,
            120,
        ),
    ]


PROMETHEUS_PORT = int(os.environ.get("DRIFTLOOP_PROMETHEUS_PORT", "9090"))
PUSHGATEWAY_PORT = int(os.environ.get("DRIFTLOOP_PUSHGATEWAY_PORT", "9091"))
STATSD_PORT = int(os.environ.get("DRIFTLOOP_STATSD_PORT", "9125"))
STATSD_EXPORTER_PORT = int(os.environ.get("DRIFTLOOP_STATSD_EXPORTER_PORT", "9102"))
OBSERVABILITY_PACKAGES = "apt-get install prometheus prometheus-pushgateway"


PROMETHEUS_CONFIG = HOME / "prometheus" / "prometheus.yml"


def write_prometheus_config() -> Path:
    """deploy/prometheus/prometheus.yml with this stack's ports and the repo's rule files."""
    source = REPO_ROOT / "deploy" / "prometheus"
    text = (source / "prometheus.yml").read_text()
    for default, port in ((8000, API_PORT), (9091, PUSHGATEWAY_PORT), (9102, STATSD_EXPORTER_PORT)):
        text = text.replace(f'"127.0.0.1:{default}"', f'"127.0.0.1:{port}"')
    text = text.replace("  - rules/*.yml", f"  - {source / 'rules'}/*.yml")
    PROMETHEUS_CONFIG.parent.mkdir(parents=True, exist_ok=True)
    PROMETHEUS_CONFIG.write_text(text)
    return PROMETHEUS_CONFIG


def observability_services() -> list[Service]:
    """Prometheus (+ the Airflow StatsD exporter) and the Pushgateway, where installed.

    Prometheus reads deploy/prometheus/prometheus.yml rewritten for this
    stack's ports (`write_prometheus_config`, run by `up`).
    """
    found: list[Service] = []
    gateway = shutil.which("prometheus-pushgateway")
    if gateway:
        found.append(
            Service(
                "pushgateway",
                [
                    gateway,
                    f"--web.listen-address=127.0.0.1:{PUSHGATEWAY_PORT}",
                    f"--persistence.file={HOME / 'pushgateway' / 'metrics.data'}",
                ],
                f"http://127.0.0.1:{PUSHGATEWAY_PORT}/-/ready",
                signal.SIGTERM,
                60,
            )
        )
    prometheus = shutil.which("prometheus")
    if prometheus:
        found.append(
            Service(
                "statsd-exporter",
                [
                    sys.executable,
                    "-m",
                    "monitoring.statsd_exporter",
                    f"--statsd-port={STATSD_PORT}",
                    f"--web-port={STATSD_EXPORTER_PORT}",
                    "--seed-dag=training_pipeline",
                    "--seed-dag=drift_check",
                ],
                f"http://127.0.0.1:{STATSD_EXPORTER_PORT}/metrics",
                signal.SIGTERM,
                60,
            )
        )
        found.append(
            Service(
                "prometheus",
                [
                    prometheus,
                    f"--config.file={PROMETHEUS_CONFIG}",
                    f"--storage.tsdb.path={HOME / 'prometheus'}",
                    f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
                ],
                f"http://127.0.0.1:{PROMETHEUS_PORT}/-/ready",
                signal.SIGTERM,
                60,
            )
        )
    return found


def observability_env(present: list[Service]) -> dict[str, str]:
    """Point the pipelines at the Pushgateway and Airflow's StatsD output at the exporter."""
    names = {service.name for service in present}
    env: dict[str, str] = {}
    if "pushgateway" in names:
        env["DRIFTLOOP_PUSHGATEWAY_URL"] = f"http://127.0.0.1:{PUSHGATEWAY_PORT}"
    if "statsd-exporter" in names:
        env.update(
            {
                "AIRFLOW__METRICS__STATSD_ON": "True",
                "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
                "AIRFLOW__METRICS__STATSD_PORT": str(STATSD_PORT),
                "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
            }
        )
    return env


def all_services() -> list[Service]:
    """The observability services first, so Airflow starts with its StatsD target up."""
    return observability_services() + services()


def _read_pid(service: Service) -> int | None:
    try:
        pid = int(service.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def http_json(method: str, url: str, body: Any = None, timeout: float = 60) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _restore_sigint() -> None:
    # Background jobs of non-interactive shells inherit SIGINT as ignored;
    # Airflow standalone needs it to shut down cleanly.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _port_taken(url: str) -> bool:
    parsed = urllib.parse.urlparse(url)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        return probe.connect_ex((parsed.hostname or "127.0.0.1", parsed.port or 80)) == 0


def start(service: Service, env: dict[str, str]) -> int:
    pid = _read_pid(service)
    if pid is not None:
        print(f"  {service.name}: already running (pid {pid})")
        return pid
    if _port_taken(service.health_url):
        # Something this stack did not start answers there: never mistake it for ours.
        raise StackError(
            f"{service.name}: {service.health_url} is already taken by a process this stack "
            f"did not start (state in {HOME}); stop it or pick another port with "
            "DRIFTLOOP_AIRFLOW_PORT / DRIFTLOOP_MLFLOW_PORT / DRIFTLOOP_API_PORT"
        )
    service.log_file.parent.mkdir(parents=True, exist_ok=True)
    service.pid_file.parent.mkdir(parents=True, exist_ok=True)
    log = service.log_file.open("ab")
    proc = subprocess.Popen(
        service.command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=REPO_ROOT,
        start_new_session=True,
        preexec_fn=_restore_sigint,
    )
    service.pid_file.write_text(str(proc.pid))
    print(f"  {service.name}: started (pid {proc.pid}, log {service.log_file})")
    return proc.pid


def wait_healthy(service: Service) -> None:
    started = time.monotonic()
    while time.monotonic() - started < service.start_timeout:
        if _healthy(service.health_url):
            print(f"  {service.name}: healthy after {time.monotonic() - started:.0f} s")
            return
        if _read_pid(service) is None:
            raise StackError(f"{service.name} exited during start-up; see {service.log_file}")
        time.sleep(2)
    raise StackError(
        f"{service.name} not healthy at {service.health_url} after {service.start_timeout:.0f} s;"
        f" see {service.log_file}"
    )


def up() -> None:
    env = stack_env()
    (HOME / "mlflow" / "artifacts").mkdir(parents=True, exist_ok=True)
    print("starting the embedded stack (state in", HOME, ")")
    watching = observability_services()
    env.update(observability_env(watching))
    write_prometheus_config()
    if len(watching) < 3:
        print(
            f"  metrics: Prometheus and/or the Pushgateway not installed ({OBSERVABILITY_PACKAGES})"
        )
    todo = all_services()
    try:
        for service in todo:
            start(service, env)
    except StackError:
        down()
        raise
    for service in todo:
        wait_healthy(service)


def _process_group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_gone(check: Any, grace: float) -> bool:
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not check():
            return True
        time.sleep(0.5)
    return not check()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(service: Service, grace: float = 45) -> None:
    """Signal the service's leader (it shuts its children down), then sweep its group."""
    pid = _read_pid(service)
    if pid is None:
        service.pid_file.unlink(missing_ok=True)
        print(f"  {service.name}: not running")
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, service.stop_signal)
    clean = _wait_gone(lambda: _pid_alive(pid), grace)
    if _process_group_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        if not _wait_gone(lambda: _process_group_alive(pid), 10):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            clean = False
    print(f"  {service.name}: {'stopped' if clean else 'killed after the grace period'}")
    service.pid_file.unlink(missing_ok=True)


def down() -> None:
    print("stopping the embedded stack")
    for service in reversed(all_services()):
        stop(service)


def status() -> int:
    code = 0
    for service in all_services():
        pid = _read_pid(service)
        healthy = _healthy(service.health_url)
        print(f"  {service.name:8s} pid={pid or '-':<8} healthy={healthy}  {service.health_url}")
        code |= 0 if healthy else 1
    return code


def trigger(dag_id: str, conf: dict[str, Any], run_id: str | None = None) -> str:
    """Start a DAG run through Airflow's REST API; returns its run id.

    The run id is chosen here so a retry after a time-out (SQLite under load
    can be slow to answer) finds the run instead of starting a second one.
    """
    run_id = (
        run_id
        or f"{conf.get('reason', 'manual').replace(' ', '_')}__{time.strftime('%Y%m%dT%H%M%S')}"
    )
    url = f"{AIRFLOW_URL}/api/v2/dags/{dag_id}/dagRuns"
    for attempt in range(1, 6):
        try:
            http_json("POST", url, {"dag_run_id": run_id, "logical_date": None, "conf": conf})
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 409:  # created by an earlier attempt that timed out
                break
            if exc.code < 500 or attempt == 5:
                raise StackError(
                    f"Airflow refused to trigger {dag_id}: {exc.code} {exc.read()!r}"
                ) from exc
        except (TimeoutError, urllib.error.URLError):
            if attempt == 5:
                raise
        time.sleep(3)
    print(f"triggered {dag_id}: run {run_id}")
    return run_id


def wait_for_dag(dag_id: str, timeout: float = 120) -> None:
    """The DAG processor needs a moment to parse a new DAG folder."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            http_json("GET", f"{AIRFLOW_URL}/api/v2/dags/{dag_id}")
            return
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
        time.sleep(3)
    raise StackError(f"Airflow has not parsed DAG {dag_id!r} after {timeout:.0f} s")


def wait_for_run(dag_id: str, run_id: str, timeout: float = 1800) -> str:
    """Poll a run, printing each task's state change; returns the final state."""
    quoted = urllib.parse.quote(run_id, safe="")
    base = f"{AIRFLOW_URL}/api/v2/dags/{dag_id}/dagRuns/{quoted}"
    seen: dict[str, str] = {}
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            run = http_json("GET", base)
            tasks = http_json("GET", f"{base}/taskInstances")["task_instances"]
        except (TimeoutError, urllib.error.URLError) as exc:
            print(f"  (Airflow slow to answer: {exc}; retrying)")
            time.sleep(3)
            continue
        for ti in sorted(tasks, key=lambda t: t.get("start_date") or "9999"):
            key = (
                f"{ti['task_id']}[{ti['map_index']}]"
                if ti.get("map_index", -1) >= 0
                else ti["task_id"]
            )
            state = ti.get("state") or "none"
            if seen.get(key) != state:
                seen[key] = state
                print(f"  [{time.monotonic() - started:6.0f} s] {dag_id}.{key}: {state}")
        if run["state"] in ("success", "failed"):
            return str(run["state"])
        time.sleep(3)
    raise StackError(f"{dag_id} run {run_id} still running after {timeout:.0f} s")


DEFAULT_USE_CASE = "reviews"


def model_info_url(use_case: str = DEFAULT_USE_CASE) -> str:
    """The API's model-info route of a use case (the default one also answers unprefixed)."""
    if use_case == DEFAULT_USE_CASE:
        return f"{API_URL}/model-info"
    return f"{API_URL}/v1/{urllib.parse.quote(use_case)}/model-info"


def wait_ready(timeout: float = 180, use_case: str = DEFAULT_USE_CASE) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    probe = f"{API_URL}/ready" if use_case == DEFAULT_USE_CASE else model_info_url(use_case)
    while time.monotonic() < deadline:
        if _healthy(probe):
            return dict(http_json("GET", model_info_url(use_case)))
        time.sleep(2)
    raise StackError(
        f"the API did not report a loaded {use_case} model within {timeout:.0f} s; "
        f"see {HOME / 'logs' / 'api.log'}"
    )


def task_result(dag_id: str, run_id: str, task_id: str) -> Any:
    """What a finished task returned (its XCom), through the REST API."""
    quoted = urllib.parse.quote(run_id, safe="")
    url = (
        f"{AIRFLOW_URL}/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}"
        "/xcomEntries/return_value"
    )
    return http_json("GET", url)["value"]


def ask_reload() -> bool:
    """POST /admin/reload when an admin key is configured; True if the API accepted."""
    key = os.environ.get("DRIFTLOOP_ADMIN_API_KEY")
    if not key:
        return False
    request = urllib.request.Request(
        f"{API_URL}/admin/reload", data=b"", method="POST", headers={"X-API-Key": key}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status == 200
    except (urllib.error.URLError, TimeoutError, OSError):
        return False


def wait_serving(
    version: str, timeout: float = 180, use_case: str = DEFAULT_USE_CASE
) -> dict[str, Any]:
    """Wait until the API's model-info reports `version` (asking it to reload if it may)."""
    ask_reload()
    deadline = time.monotonic() + timeout
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(urllib.error.URLError, TimeoutError, OSError):
            info = dict(http_json("GET", model_info_url(use_case)))
            if str(info.get("version")) == str(version):
                return info
        time.sleep(1)
    raise StackError(
        f"the API still serves v{info.get('version')} {timeout:.0f} s after the champion became "
        f"v{version}; see {HOME / 'logs' / 'api.log'}"
    )


def describe_gate(model_name: str, result: dict[str, Any]) -> tuple[str, str]:
    """(the version that is champion now, one sentence saying what the gate did)."""
    decision = result.get("decision") or {}
    reason = decision.get("reason", "")
    if result.get("promoted"):
        return str(result["version"]), (
            f"the gate promoted {model_name} v{result['version']} to champion ({reason})"
        )
    kept = str(result.get("champion_version") or "")
    return kept, (
        f"the gate kept the champion {model_name} v{kept}; the new v{result['version']} stays "
        f"challenger ({reason})"
    )


def example_row(use_case: str) -> dict[str, Any]:
    """One request body of `/v1/<use_case>/predict` from the examples its OpenAPI schema shows."""
    spec = http_json("GET", f"{API_URL}/openapi.json")
    route = spec["paths"][f"/v1/{use_case}/predict"]["post"]
    schema = route["requestBody"]["content"]["application/json"]["schema"]
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    row: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        if prop.get("examples"):
            row[name] = prop["examples"][0]
        elif "example" in prop or "default" in prop:
            row[name] = prop.get("example", prop.get("default"))
        else:
            raise StackError(f"/v1/{use_case}/predict field {name!r} shows no example in /docs")
    return row


def _print_prediction(answer: dict[str, Any], champion: str, model_name: str) -> None:
    answered = str(answer["model_version"])
    note = "" if answered == champion else f" (expected v{champion}: the API swapped meanwhile)"
    print(
        f"    -> {answer['label_name']} (p={answer['probability']:.3f}), answered by "
        f"{model_name} v{answered}{note}"
    )
    for rank, reason in enumerate(answer.get("reasons") or [], start=1):
        value = reason.get("value")
        shown = "" if value is None else f" (value {value:.4g})"
        print(
            f"       reason {rank}: {reason['feature']}{shown} raises the log-odds by "
            f"{reason['contribution']:+.3f}"
        )


def demo(data_path: str, source: str | None, use_case: str = DEFAULT_USE_CASE) -> int:
    """Start the stack, train on the data through Airflow, serve, predict."""
    started = time.monotonic()
    up()
    data_path = str(Path(data_path).resolve()) if data_path else ""
    conf = {
        "use_case": use_case,
        "data_path": data_path,
        "source": source or "infer",
        "reason": "make demo",
    }
    wait_for_dag("training_pipeline")
    run_id = trigger("training_pipeline", conf)
    state = wait_for_run("training_pipeline", run_id)
    if state != "success":
        raise StackError(
            f"training_pipeline run {run_id} ended {state}; task logs under "
            f"{HOME / 'airflow' / 'logs'} and in the UI at {AIRFLOW_URL}/dags/training_pipeline"
        )
    result = task_result("training_pipeline", run_id, "register")
    model_name = str(result.get("model_name") or "")
    champion, what = describe_gate(model_name, result)
    print(f"\n{what}")
    wait_ready(use_case=use_case)
    info = wait_serving(champion, use_case=use_case)
    print(f"the API serves {info.get('name')} v{info.get('version')} (alias champion)")
    if use_case != DEFAULT_USE_CASE:
        return _demo_use_case(use_case, run_id, champion, model_name, info, started)
    samples = [
        "An absolute delight from start to finish, I loved every minute!",
        "Dull, badly acted and far too long. I want those two hours back.",
    ]
    print()
    for text in samples:
        answer = http_json("POST", f"{API_URL}/predict", {"text": text})
        print(f"  POST /predict {text!r}")
        answered = str(answer["model_version"])
        note = "" if answered == champion else f" (expected v{champion}: the API swapped meanwhile)"
        print(
            f"    -> {answer['label_name']} (p={answer['probability']:.3f}), answered by "
            f"{model_name} v{answered}{note}"
        )
    print(
        f"""
driftloop demo finished in {time.monotonic() - started:.0f} s.
  Airflow UI   {AIRFLOW_URL}/dags/training_pipeline/runs/{urllib.parse.quote(run_id, safe="")}
               (local demo: no login, every visitor is admin)
  MLflow UI    {MLFLOW_URL}/#/models/{info.get("name", "")}
  API docs     {API_URL}/docs   (serving {info.get("name")} v{info.get("version")}, alias champion)
  Try          curl -s -X POST {API_URL}/predict -H 'content-type: application/json' \\
                 -d '{{"text": "What a wonderful film"}}'
  Stop         make down
"""
    )
    return 0


def _demo_use_case(
    use_case: str,
    run_id: str,
    champion: str,
    model_name: str,
    info: dict[str, Any],
    started: float,
) -> int:
    """The demo's last part for a use case other than reviews: score its /docs example row."""
    row = example_row(use_case)
    url = f"{API_URL}/v1/{use_case}/predict"
    answer = http_json("POST", url, row)
    print(f"\n  POST /v1/{use_case}/predict (the example row of {API_URL}/docs)")
    print(f"    {json.dumps(row)}")
    _print_prediction(answer, champion, model_name)
    print(
        f"""
driftloop demo ({use_case}) finished in {time.monotonic() - started:.0f} s.
  Airflow UI   {AIRFLOW_URL}/dags/training_pipeline/runs/{urllib.parse.quote(run_id, safe="")}
               (local demo: no login, every visitor is admin)
  MLflow UI    {MLFLOW_URL}/#/models/{info.get("name", "")}
  API docs     {API_URL}/docs   (serving {info.get("name")} v{info.get("version")}, alias champion)
  Try          curl -s -X POST {url} -H 'content-type: application/json' \\
                 -d '{json.dumps(row)}'
  Stop         make down
"""
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up")
    sub.add_parser("down")
    sub.add_parser("status")
    trig = sub.add_parser("trigger")
    trig.add_argument("dag_id")
    trig.add_argument("conf", nargs="?", default="{}")
    trig.add_argument("--wait", action="store_true")
    dem = sub.add_parser("demo")
    dem.add_argument("--data", default="", help="data file; empty = synthetic rows of the use case")
    dem.add_argument("--source", default=None, help="sources.yaml entry (inferred from the name)")
    dem.add_argument(
        "--use-case", default=DEFAULT_USE_CASE, help="registered use case to train and serve"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up()
        elif args.command == "down":
            down()
        elif args.command == "status":
            return status()
        elif args.command == "demo":
            return demo(args.data, args.source, args.use_case)
        elif args.command == "trigger":
            wait_for_dag(args.dag_id)
            run_id = trigger(args.dag_id, json.loads(args.conf))
            if args.wait:
                state = wait_for_run(args.dag_id, run_id)
                print(f"{args.dag_id} run {run_id}: {state}")
                return 0 if state == "success" else 1
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
