"""The embedded stack's processes talk to the stack's own MLflow, whatever the caller's shell says."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

STACK = Path(__file__).resolve().parents[2] / "deploy" / "local" / "stack.py"


def _load_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    monkeypatch.setenv("DRIFTLOOP_HOME", str(tmp_path))
    monkeypatch.setenv("DRIFTLOOP_MLFLOW_PORT", "15999")
    spec = importlib.util.spec_from_file_location("driftloop_stack_env_under_test", STACK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_inherited_registry_experiment_and_run_are_replaced(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/mlflow.db")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "sqlite:////elsewhere/mlflow.db")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "4")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "someone-elses")
    monkeypatch.setenv("MLFLOW_RUN_ID", "0123abcd")
    stack = _load_stack(monkeypatch, tmp_path)

    env = stack.stack_env()

    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:15999"
    assert env["MLFLOW_REGISTRY_URI"] == "http://127.0.0.1:15999"
    for name in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        assert name not in env


def test_airflow_log_servers_follow_the_stack_ports(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A second stack on the machine (the tests' one beside `make up`) must not share
    Airflow's fixed log-server ports 8793/8794 with the first."""
    monkeypatch.setenv("DRIFTLOOP_AIRFLOW_LOG_SERVER_PORT", "18293")
    monkeypatch.setenv("DRIFTLOOP_AIRFLOW_TRIGGER_LOG_SERVER_PORT", "18294")
    env = _load_stack(monkeypatch, tmp_path).stack_env()
    assert env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == "18293"
    assert env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] == "18294"

    monkeypatch.delenv("DRIFTLOOP_AIRFLOW_LOG_SERVER_PORT")
    monkeypatch.delenv("DRIFTLOOP_AIRFLOW_TRIGGER_LOG_SERVER_PORT")
    env = _load_stack(monkeypatch, tmp_path).stack_env()
    assert env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == "8793"
    assert env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] == "8794"


def test_the_test_stack_uses_its_own_log_server_ports() -> None:
    from tests.stack import PORTS

    assert PORTS["DRIFTLOOP_AIRFLOW_LOG_SERVER_PORT"] not in ("8793", "8794")
    assert PORTS["DRIFTLOOP_AIRFLOW_TRIGGER_LOG_SERVER_PORT"] not in ("8793", "8794")
    assert len(set(PORTS.values())) == len(PORTS)


def test_the_kubernetes_mode_test_stack_shares_no_port_with_the_first() -> None:
    from tests.stack import KUBERNETES_PORTS, PORTS

    assert KUBERNETES_PORTS.keys() == PORTS.keys()
    assert not set(KUBERNETES_PORTS.values()) & set(PORTS.values())
    assert len(set(KUBERNETES_PORTS.values())) == len(KUBERNETES_PORTS)


def test_rendered_templates_hold_a_whole_pod_spec_as_the_chart_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AIRFLOW__CORE__MAX_TEMPLATED_FIELD_LENGTH", raising=False)
    values = yaml.safe_load(
        (STACK.parents[1] / "k8s" / "airflow" / "values.yaml").read_text(encoding="utf-8")
    )
    env = _load_stack(monkeypatch, tmp_path).stack_env()

    chart = str(values["config"]["core"]["max_templated_field_length"])
    assert env["AIRFLOW__CORE__MAX_TEMPLATED_FIELD_LENGTH"] == chart
