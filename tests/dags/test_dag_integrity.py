"""Every DAG file imports cleanly, is wired as intended and stays cheap to parse."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "airflow" / "dags"
DAG_FILES = sorted(p for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_"))
HEAVY = (
    "pandas",
    "numpy",
    "sklearn",
    "pyspark",
    "mlflow",
    "optuna",
    "evidently",
    "great_expectations",
    "pandera",
)


MODES = ("local", "kubernetes")
HEAVY_TASKS = {
    "training_pipeline": {"featurize", "tune", "refit"},
    "drift_check": {"detect_drift"},
}


def _parse(mode: str):
    from airflow.dag_processing.dagbag import DagBag

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DRIFTLOOP_EXECUTION", mode)
        return DagBag(dag_folder=str(DAGS_DIR))


@pytest.fixture(scope="module", params=MODES)
def dagbag(request):
    """Every integrity test runs on the DAGs as parsed in each execution mode."""
    return _parse(request.param)


def test_dag_files_exist() -> None:
    assert {p.stem for p in DAG_FILES} >= {"training_pipeline", "drift_check"}


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}


def test_dag_id_equals_file_stem(dagbag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert Path(dag.fileloc).stem == dag_id


def test_tags_retries_and_docs(dagbag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md, f"{dag_id} has no docs"
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


def test_no_cycles(dagbag) -> None:
    for dag in dagbag.dags.values():
        dag.check_cycle()  # raises AirflowDagCycleException on a cycle
        assert len(dag.topological_sort()) == len(dag.tasks)


def test_training_pipeline_wiring(dagbag) -> None:
    dag = dagbag.dags["training_pipeline"]
    edges = {(t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids}
    chain = [
        "ingest",
        "validate_raw",
        "featurize",
        "plan_search",
        "tune",
        "select_best",
        "refit",
        "evaluate",
        "register",
    ]
    for upstream, downstream in itertools.pairwise(chain):
        assert (upstream, downstream) in edges
    assert {
        "data_path",
        "model_name",
        "max_quarantine_share",
        "reason",
        "families",
        "n_trials",
        "family_timeout_s",
    } <= set(dag.params)
    assert dag.get_task("tune").is_mapped


def test_drift_check_wiring(dagbag) -> None:
    dag = dagbag.dags["drift_check"]
    edges = {(t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids}
    assert ("decide", "trigger_retrain") in edges
    assert dag.get_task("trigger_retrain").trigger_dag_id == "training_pipeline"
    assert {"thresholds", "retrain", "retrain_data_path", "window_start"} <= set(dag.params)
    # The shadow phase's daily re-gate runs whatever the drift decision (and in the worker).
    regate = dag.get_task("regate_challenger")
    assert not regate.upstream_task_ids and not regate.downstream_task_ids


def test_modes_share_task_ids_params_and_graph() -> None:
    """Kubernetes mode changes where heavy tasks run, nothing a user sees in the graph."""
    local, kubernetes = _parse("local"), _parse("kubernetes")
    assert local.import_errors == {} and kubernetes.import_errors == {}
    assert set(local.dags) == set(kubernetes.dags)
    for dag_id, dag in local.dags.items():
        other = kubernetes.dags[dag_id]
        assert set(dag.task_dict) == set(other.task_dict)
        assert dict(dag.params) == dict(other.params)
        for task in dag.tasks:
            twin = other.get_task(task.task_id)
            assert task.downstream_task_ids == twin.downstream_task_ids
            assert task.is_mapped == twin.is_mapped
            assert task.retries == twin.retries


def test_heavy_tasks_are_pods_only_in_kubernetes_mode() -> None:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    for mode, bag in (("local", _parse("local")), ("kubernetes", _parse("kubernetes"))):
        for dag_id, heavy in HEAVY_TASKS.items():
            dag = bag.dags[dag_id]
            for task in dag.tasks:
                operator = task.operator_class if task.is_mapped else type(task)
                is_pod = issubclass(operator, KubernetesPodOperator)
                expected = mode == "kubernetes" and task.task_id in heavy
                assert is_pod == expected, f"{mode}: {dag_id}.{task.task_id} is_pod={is_pod}"


def test_unknown_execution_mode_is_an_import_error() -> None:
    errors = _parse("cluster").import_errors
    assert errors and all("DRIFTLOOP_EXECUTION" in str(e) for e in errors.values())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_no_heavy_library(dag_file: Path, mode: str) -> None:
    """Parsing must stay fast: heavy libraries are imported inside tasks only."""
    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('dagfile', {str(dag_file)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))\n"
    )
    env = {**os.environ, "DRIFTLOOP_EXECUTION": mode}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
