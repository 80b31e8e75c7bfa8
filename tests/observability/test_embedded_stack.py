"""`make up`'s observability part: Prometheus, the Pushgateway and the StatsD exporter start.

Loads deploy/local/stack.py with a temp DRIFTLOOP_HOME and spare ports, starts
only its observability services the way `up` does, and checks Prometheus
runs the committed rules and scrape jobs. Airflow, MLflow and the API are
not started here (tests/e2e covers them).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.observability.tools import REPO_ROOT, free_port, http_get, require, wait_until


def _load_stack(monkeypatch: pytest.MonkeyPatch, home: Path) -> ModuleType:
    monkeypatch.setenv("DRIFTLOOP_HOME", str(home))
    for name in ("PROMETHEUS", "PUSHGATEWAY", "STATSD", "STATSD_EXPORTER"):
        monkeypatch.setenv(f"DRIFTLOOP_{name}_PORT", str(free_port()))
    path = REPO_ROOT / "deploy" / "local" / "stack.py"
    spec = importlib.util.spec_from_file_location("driftloop_local_stack", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_up_starts_prometheus_pushgateway_and_exporter(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    require("prometheus", "prometheus-pushgateway")
    stack = _load_stack(monkeypatch, tmp_path)
    watching = stack.observability_services()
    assert [s.name for s in watching] == ["pushgateway", "statsd-exporter", "prometheus"]
    env = stack.observability_env(watching)
    assert env["DRIFTLOOP_PUSHGATEWAY_URL"].endswith(str(stack.PUSHGATEWAY_PORT))
    assert env["AIRFLOW__METRICS__STATSD_PORT"] == str(stack.STATSD_PORT)
    config = stack.write_prometheus_config().read_text()
    assert f'"127.0.0.1:{stack.PUSHGATEWAY_PORT}"' in config
    assert f'"127.0.0.1:{stack.STATSD_EXPORTER_PORT}"' in config
    assert '"127.0.0.1:9091"' not in config
    try:
        for service in watching:
            stack.start(service, {**stack.stack_env(), **env})
        for service in watching:
            stack.wait_healthy(service)
        prometheus = f"http://127.0.0.1:{stack.PROMETHEUS_PORT}"
        rules = json.loads(http_get(f"{prometheus}/api/v1/rules"))["data"]["groups"]
        assert {g["name"] for g in rules} == {
            "driftloop-serving",
            "driftloop-model",
            "driftloop-pipelines",
        }

        def jobs() -> set[str]:
            answer = json.loads(http_get(f"{prometheus}/api/v1/targets"))
            return {t["labels"]["job"] for t in answer["data"]["activeTargets"]}

        wait_until(lambda: bool(jobs()), "Prometheus to load its scrape jobs", 30)
        assert jobs() == {"driftloop-api", "pushgateway", "airflow"}

        def exporter_scraped() -> bool:
            up = json.loads(
                http_get(f"{prometheus}/api/v1/query?query=up%7Bjob%3D%22airflow%22%7D")
            )
            return [r["value"][1] for r in up["data"]["result"]] == ["1"]

        wait_until(exporter_scraped, "Prometheus to scrape the StatsD exporter", 30)
    finally:
        # Children of this process: signal and reap them here (`down` runs in
        # another process, where stop()'s liveness check sees them exit).
        for service in reversed(watching):
            pid = stack._read_pid(service)
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            service.pid_file.unlink(missing_ok=True)


def test_up_says_so_when_the_binaries_are_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = _load_stack(monkeypatch, tmp_path)
    monkeypatch.setattr(stack.shutil, "which", lambda name: None)
    assert stack.observability_services() == []
    assert stack.observability_env([]) == {}
