"""The UIs as a person uses them: Airflow's trigger forms, MLflow's model page, the API docs.

Runs a real Chromium (Playwright) against the embedded stack the test session
starts the way `make demo` does (tests/stack.py). Each step saves a
screenshot under test-output/browser/<test>/. Small on purpose: one model
family, one trial, 2,500 synthetic reviews (enough for the champion's
reference profile to anchor the drift checks the e2e test runs next on the
same stack).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.browser.airflow_ui import (
    choose,
    fill,
    open_section,
    open_trigger_form,
    press_trigger,
    trigger_button,
)
from tests.stack import RunningStack, call

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

MODEL = "review-sentiment"


def _finished(stack: RunningStack, page, shot, dag_id: str, run_id: str) -> dict:
    """Wait for the run (REST), show its page, return the run as the REST API reports it."""
    state = stack.wait_run(dag_id, run_id)
    page.goto(f"{stack.airflow}/dags/{dag_id}/runs/{run_id}")
    page.wait_for_load_state("domcontentloaded")
    time.sleep(3)  # let the grid draw the final task states
    shot(f"run-{state}")
    run = call("GET", stack.run_url(dag_id, run_id))
    assert state == "success", f"{dag_id} run {run_id} ended {state}; conf {run['conf']}"
    return run


def test_training_pipeline_from_its_trigger_form(embedded_stack: RunningStack, page, shot) -> None:
    dialog = open_trigger_form(page, embedded_stack.airflow, "training_pipeline")
    shot("form-as-it-opens")
    assert trigger_button(dialog).is_enabled(), "Trigger is disabled on the untouched form"

    fill(dialog, "synthetic_rows", "2500")
    open_section(dialog, "Advanced:")
    fill(dialog, "n_trials", "1")
    choose(dialog, "families", ["logreg"])
    shot("form-filled")
    assert trigger_button(dialog).is_enabled()

    run_id = press_trigger(page, dialog)
    shot("run-started")
    run = _finished(embedded_stack, page, shot, "training_pipeline", run_id)

    conf = run["conf"]
    assert (conf["synthetic_rows"], conf["n_trials"], conf["families"]) == (2500, 1, ["logreg"])
    # What the tasks saw, in their own words:
    ingest = embedded_stack.task_log("training_pipeline", run_id, "ingest")
    assert "snapshotting 2500 generated synthetic rows of use case 'reviews'" in ingest, ingest[
        -2000:
    ]
    plan = embedded_stack.task_log("training_pipeline", run_id, "plan_search")
    assert "1 families ['logreg'], 1 trials" in plan, plan[-2000:]
    register = embedded_stack.task_log("training_pipeline", run_id, "register")
    assert "register done: " in register, register[-2000:]


def test_drift_check_from_its_trigger_form(embedded_stack: RunningStack, page, shot) -> None:
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(hours=6)
    dialog = open_trigger_form(page, embedded_stack.airflow, "drift_check")
    shot("form-as-it-opens")
    assert trigger_button(dialog).is_enabled(), "Trigger is disabled on the untouched form"

    fill(dialog, "window_start", start.isoformat())
    fill(dialog, "window_end", end.isoformat())
    shot("form-filled")
    run_id = press_trigger(page, dialog)
    shot("run-started")
    run = _finished(embedded_stack, page, shot, "drift_check", run_id)

    assert (run["conf"]["window_start"], run["conf"]["window_end"]) == (
        start.isoformat(),
        end.isoformat(),
    )
    window = embedded_stack.task_log("drift_check", run_id, "load_window")
    assert f"from {start.isoformat()} to {end.isoformat()}" in window, window[-2000:]


def test_mlflow_model_page_and_api_docs(embedded_stack: RunningStack, page, shot) -> None:
    deadline = time.monotonic() + 120
    info: dict = {}
    while time.monotonic() < deadline and not info.get("version"):
        try:
            info = call("GET", f"{embedded_stack.api}/model-info")
        except OSError:
            time.sleep(3)
    assert info.get("version"), f"the API serves no champion: {info}"

    chip = page.get_by_text(re.compile(r"^@\s*champion$"))
    page.goto(f"{embedded_stack.mlflow}/#/models/{MODEL}")
    chip.first.wait_for()
    shot("mlflow-registered-model")
    # The champion chip sits on the row of the version the API serves.
    served = page.get_by_role("row").filter(has_text=f"Version {info['version']}")
    assert served.filter(has=chip).count() == 1
    page.goto(f"{embedded_stack.mlflow}/#/models/{MODEL}/versions/{info['version']}")
    chip.first.wait_for()
    shot("mlflow-champion-version")

    page.goto(f"{embedded_stack.api}/docs")
    operation = page.locator(".opblock-summary-path", has_text="/predict").first
    operation.wait_for()
    shot("api-docs")
    assert page.locator(".opblock-summary-path").filter(has_text="/predict").count() >= 1
