"""Kubernetes execution mode as a person sees it in Airflow 3's UI (real Chromium).

A second embedded stack, on its own ports, parses the DAGs with
`DRIFTLOOP_EXECUTION=kubernetes`. The graph must show the heavy tasks as
KubernetesPodOperator tasks and the light ones as plain `@task`; a run
triggered from the form with its defaults must reach the first pod task, and
that task instance's "Rendered Templates" tab must show the pod it submits.

There is no Kubernetes API server here, so the pod task fails when the
provider looks for a cluster. That happens after the task has rendered its
templates (the task runner sends the rendered fields before `execute`), which
is why the pod spec is there to see. The docker pod runner
(`DRIFTLOOP_POD_BACKEND=docker`) is not used.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.execution import load_pod_settings
from pipelines.pod_operator import POD_COMMAND
from tests.browser.airflow_ui import open_trigger_form, press_trigger, trigger_button
from tests.stack import KUBERNETES_PORTS, REPO, RunningStack, call, start_stack, stop_stack

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

DAG = "training_pipeline"
HEAVY = {"featurize": "featurize", "tune": "tune", "refit": "refit"}  # task id -> pod kind
LIGHT = ("ingest", "validate_raw", "plan_search", "select_best", "evaluate", "register")
POD_OPERATOR = "KubernetesPodOperator"
CHART_VALUES = REPO / "deploy" / "k8s" / "airflow" / "values.yaml"


def chart_templated_field_length() -> str:
    """`[core] max_templated_field_length` as the Helm values deploy it (whole pod specs)."""
    values = yaml.safe_load(CHART_VALUES.read_text())
    return str(values["config"]["core"]["max_templated_field_length"])


@pytest.fixture(scope="module")
def kubernetes_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_stack(
        tmp_path_factory.mktemp("k8s-stack-home"),
        ports=KUBERNETES_PORTS,
        DRIFTLOOP_EXECUTION="kubernetes",
        # The provider's own path to a cluster, never the docker pod runner.
        DRIFTLOOP_POD_BACKEND="",
        # The Airflow that runs pod tasks is configured as the chart configures it.
        AIRFLOW__CORE__MAX_TEMPLATED_FIELD_LENGTH=chart_templated_field_length(),
    )
    try:
        yield stack
    finally:
        print(stop_stack(stack))


def _stat(page: Any, label: str) -> str:
    """The value of one heading/value pair in a page's header (e.g. "Operator")."""
    stat = page.get_by_test_id("stat").filter(
        has=page.get_by_role("heading", name=label, exact=True)
    )
    stat.first.wait_for()
    return str(stat.first.inner_text()).removeprefix(label).strip()


def test_graph_shows_heavy_tasks_as_pod_operators(
    kubernetes_stack: RunningStack, page, shot
) -> None:
    page.goto(f"{kubernetes_stack.airflow}/dags/{DAG}")
    page.get_by_role("button", name="Show Graph").click()
    nodes = page.locator(".react-flow__node")
    nodes.filter(has_text="register").first.wait_for()
    shot("graph")

    shown = {
        str(node.get_attribute("data-id")): str(node.inner_text())
        for node in nodes.all()
        if node.get_attribute("data-id")
    }
    assert set(shown) == {*HEAVY, *LIGHT}, shown
    for task_id in HEAVY:
        assert POD_OPERATOR in shown[task_id], f"graph node {task_id}: {shown[task_id]!r}"
    for task_id in LIGHT:
        assert "@task" in shown[task_id], f"graph node {task_id}: {shown[task_id]!r}"
        assert POD_OPERATOR not in shown[task_id], f"graph node {task_id}: {shown[task_id]!r}"

    # The task's own page says the same in its header.
    page.goto(f"{kubernetes_stack.airflow}/dags/{DAG}/tasks/featurize")
    operator = _stat(page, "Operator")
    shot("featurize-task")
    assert POD_OPERATOR in operator, operator
    page.goto(f"{kubernetes_stack.airflow}/dags/{DAG}/tasks/ingest")
    operator = _stat(page, "Operator")
    shot("ingest-task")
    assert operator == "@task", operator


def _task_instance(stack: RunningStack, run_id: str, task_id: str) -> dict[str, Any]:
    return dict(call("GET", f"{stack.run_url(DAG, run_id)}/taskInstances/{task_id}"))


def _wait_attempted(stack: RunningStack, run_id: str, task_id: str, timeout: float = 600) -> dict:
    """Wait until the task's first try has ended (failed or waiting for its retry)."""
    deadline = time.monotonic() + timeout
    ti: dict[str, Any] = {}
    while time.monotonic() < deadline:
        ti = _task_instance(stack, run_id, task_id)
        if ti["state"] in ("up_for_retry", "failed", "success"):
            return ti
        if ti["state"] == "upstream_failed":
            break
        time.sleep(3)
    raise AssertionError(f"{task_id} of {run_id} not attempted: {ti.get('state')}")


def _errors(stack: RunningStack, run_id: str, task_id: str, try_number: int) -> list[str]:
    """The exceptions a task's log reports, as `Type: message`."""
    url = f"{stack.run_url(DAG, run_id)}/taskInstances/{task_id}/logs/{try_number}"
    content = call("GET", f"{url}?full_content=true")["content"]
    return [
        f"{error['exc_type']}: {error['exc_value']}"
        for item in content
        for error in item.get("error_detail") or []
    ]


def _rendered_fields(page: Any) -> dict[str, str]:
    """Field name -> the text the Rendered Templates table shows (without its line numbers)."""
    page.locator("table tr").filter(has_text="pod_spec").first.wait_for()
    return dict(
        page.evaluate(
            """() => Array.from(document.querySelectorAll('table tr')).map(row => {
                const value = row.cells[1].cloneNode(true);
                value.querySelectorAll('.linenumber, button').forEach(e => e.remove());
                return [row.cells[0].innerText.trim(), value.textContent];
            })"""
        )
    )


def _container(manifest: dict[str, Any], name: str = "base") -> dict[str, Any]:
    return next(c for c in manifest["spec"]["containers"] if c["name"] == name)


def test_pod_spec_in_rendered_templates_of_a_triggered_run(
    kubernetes_stack: RunningStack, page, shot
) -> None:
    airflow = kubernetes_stack.airflow
    dialog = open_trigger_form(page, airflow, DAG)
    shot("form-as-it-opens")
    assert trigger_button(dialog).is_enabled(), "Trigger is disabled on the untouched form"
    run_id = press_trigger(page, dialog)
    shot("run-started")

    ti = _wait_attempted(kubernetes_stack, run_id, "featurize")
    for task_id in ("ingest", "validate_raw"):  # light tasks still run in the worker
        assert _task_instance(kubernetes_stack, run_id, task_id)["state"] == "success"
    assert ti["state"] in ("up_for_retry", "failed"), ti["state"]
    errors = _errors(kubernetes_stack, run_id, "featurize", 1)
    # The pod was built and the provider went looking for a cluster: there is none here.
    assert any(e.startswith("ConfigException") for e in errors), errors

    page.goto(f"{airflow}/dags/{DAG}/runs/{run_id}/tasks/featurize")
    assert POD_OPERATOR in _stat(page, "Operator")
    page.get_by_role("link", name="Rendered Templates").click()
    fields = _rendered_fields(page)
    pod_row = page.locator("table tr").filter(has_text="pod_spec").first
    pod_row.evaluate("row => row.scrollIntoView({block: 'start'})")
    shot("pod-spec-command-and-env")
    pod_row.get_by_text("resources:").first.evaluate("e => e.scrollIntoView({block: 'center'})")
    shot("pod-spec-image-and-resources")

    settings = load_pod_settings()
    kind = HEAVY["featurize"]
    text = fields["pod_spec"]
    assert not text.startswith("Truncated"), text[:200]
    manifest = yaml.safe_load(text)
    assert (manifest["apiVersion"], manifest["kind"]) == ("v1", "Pod")
    assert manifest["metadata"]["namespace"] == settings.namespace
    assert manifest["metadata"]["labels"]["driftloop.io/task-kind"] == kind
    assert manifest["spec"]["serviceAccountName"] == settings.service_account
    base = _container(manifest)
    assert base["image"] == settings.image
    assert base["command"] == list(POD_COMMAND)
    assert base["resources"] == settings.resources[kind]
    env = {e["name"]: e.get("value") for e in base["env"]}
    assert env["DRIFTLOOP_TASK_FUNCTION"] == "featurize"
    assert env["SPARK_MASTER"] == settings.kind_env[kind]["SPARK_MASTER"]
    assert "def featurize(" in env["DRIFTLOOP_TASK_SOURCE"]
    # Rendered for this task instance: this run's context and upstream result.
    assert json.loads(env["DRIFTLOOP_TASK_CONTEXT"])["run_id"] == run_id
    validated = json.loads(env["DRIFTLOOP_TASK_ARGS"])["args"][0]
    assert Path(validated["accepted_path"]).name == "accepted.parquet"
    assert _container(manifest, "airflow-xcom-sidecar")  # results come back through XCom

    # The operator's own fields, one row each.
    assert fields["image"].strip() == settings.image
    assert fields["namespace"].strip() == settings.namespace
    assert json.loads(fields["container_resources"])["limits"] == settings.resources[kind]["limits"]
