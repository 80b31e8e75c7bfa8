"""Render the pods kubernetes mode submits, from the DAGs, through the provider's builder.

Shared by the pod-spec tests (validation, no cluster) and the pod-execution
tests (the same pods run under ``docker run``).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO_ROOT / "airflow" / "dags"
KUBERNETES_VERSION = "1.33.0"

# What each heavy task receives from upstream XComs in a real run (shapes as
# pipelines.* return them); the paths live in the lake volume.
LAKE = "/var/lib/driftloop/lake/runs/manual__2026-01-01"
SAMPLE_ARGS: dict[tuple[str, str], dict[str, Any]] = {
    ("training_pipeline", "featurize"): {
        "args": [{"accepted_path": f"{LAKE}/accepted.parquet", "run_dir": LAKE}],
    },
    ("training_pipeline", "tune"): {
        "mapped": {
            "spec": {
                "family": "logreg",
                "features_dir": f"{LAKE}/spark/features",
                "run_dir": LAKE,
                "n_trials": 2,
                "timeout_s": 60.0,
                "study_name": "manual__2026-01-01-logreg",
                "parent_run_id": "0123abcd",
            }
        },
    },
    ("training_pipeline", "refit"): {
        "args": [
            {"family": "logreg", "params": {"C": 2.0}, "value": 0.91},
            [{"features_dir": f"{LAKE}/spark/features", "run_dir": LAKE, "parent_run_id": "p"}],
            {"data_sha256": "ab" * 32, "run_dir": LAKE},
        ],
    },
    ("drift_check", "detect_drift"): {
        "args": [
            {"current_path": f"{LAKE}/current.parquet", "rows": 500, "run_dir": LAKE},
            {"available": True, "profile_path": f"{LAKE}/reference/profile.parquet"},
        ],
    },
}
KIND_OF = {
    ("training_pipeline", "featurize"): "featurize",
    ("training_pipeline", "tune"): "tune",
    ("training_pipeline", "refit"): "refit",
    ("drift_check", "detect_drift"): "drift",
}


def parse_dags(mode: str, env: dict[str, str] | None = None) -> Any:
    """The DAGs as the DAG processor parses them in ``mode`` (``env``: more settings)."""
    from airflow.dag_processing.dagbag import DagBag

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DRIFTLOOP_EXECUTION", mode)
        for key, value in (env or {}).items():
            patch.setenv(key, value)
        bag = DagBag(dag_folder=str(DAGS_DIR))
    assert bag.import_errors == {}, bag.import_errors
    return bag


def task_context(dag: Any, task_id: str, run_id: str, params: dict[str, Any] | None = None) -> dict:
    """The part of an Airflow task context the pod builder and the task payload read."""
    return {
        "dag": dag,
        "run_id": run_id,
        "params": {**dict(dag.params), **(params or {})},
        "ti": SimpleNamespace(dag_id=dag.dag_id, task_id=task_id, map_index=0, try_number=1),
    }


def bind_operator(dag: Any, task_id: str, sample: dict[str, Any]) -> Any:
    """The task's operator with its upstream XComs resolved to ``sample`` values."""
    task = dag.get_task(task_id)
    if "mapped" in sample:
        return task.unmap({"op_kwargs": sample["mapped"]})
    task.op_args = list(sample.get("args", []))
    task.op_kwargs = dict(sample.get("kwargs", {}))
    return task


def render_pod(
    bag: Any,
    dag_id: str,
    task_id: str,
    sample: dict[str, Any] | None = None,
    run_id: str = "manual__2026-01-01",
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The pod manifest kubernetes mode would submit for this task instance."""
    from pipelines.pod_operator import pod_manifest

    dag = bag.dags[dag_id]
    operator = bind_operator(dag, task_id, sample or SAMPLE_ARGS[(dag_id, task_id)])
    pod = operator.build_pod_request_obj(task_context(dag, task_id, run_id, params), dry_run=True)
    return pod_manifest(pod)


def container(manifest: dict[str, Any], name: str = "base") -> dict[str, Any]:
    return next(c for c in manifest["spec"]["containers"] if c["name"] == name)


def env_of(manifest: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(manifest)["env"]}


def pipeline_image() -> str:
    return os.environ.get("DRIFTLOOP_PIPELINE_IMAGE", "driftloop/pipeline:dev")


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    """Where a pod spec breaks the "restricted" Pod Security Standard the namespace enforces."""
    problems = []
    pod_context = spec.get("securityContext") or {}
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        context = c.get("securityContext") or {}
        name = c["name"]
        if not (context.get("runAsNonRoot") or pod_context.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot not set")
        if (context.get("runAsUser", pod_context.get("runAsUser")) or 0) == 0:
            problems.append(f"{name}: no non-zero runAsUser")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if "ALL" not in ((context.get("capabilities") or {}).get("drop") or []):
            problems.append(f"{name}: capabilities not dropped")
        seccomp = context.get("seccompProfile") or pod_context.get("seccompProfile") or {}
        if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: no seccomp profile")
    for volume in spec.get("volumes", []):
        if "hostPath" in volume:
            problems.append(f"volume {volume['name']} is a hostPath")
    return problems
