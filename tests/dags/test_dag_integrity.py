"""Every DAG file imports cleanly, is wired as intended and stays cheap to parse."""

from __future__ import annotations

import itertools
import json
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


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


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


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_no_heavy_library(dag_file: Path) -> None:
    """Parsing must stay fast: heavy libraries are imported inside tasks only."""
    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('dagfile', {str(dag_file)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
