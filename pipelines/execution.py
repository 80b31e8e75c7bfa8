"""Where the heavy DAG tasks run: in the Airflow worker or in their own Kubernetes pod.

One setting, ``DRIFTLOOP_EXECUTION`` (``local`` or ``kubernetes``), read when a
DAG file is parsed, from the environment or else from the Airflow Variable
``driftloop_execution``. The DAG files decorate their heavy tasks with
``heavy_task(kind)`` instead of ``task``; everything else about a DAG (task ids,
Params, the graph) is the same in both modes, so there is one DAG, not two.

This module is imported at DAG parse time: it stays light (no provider, no
Kubernetes client) in local mode and imports the pod operator only when asked
for pods.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.lake import LakeConfigError, LakeSettings, lake_settings

log = logging.getLogger(__name__)

MODES = ("local", "kubernetes")
HEAVY_KINDS = ("featurize", "tune", "refit", "drift")
ENV_MODE = "DRIFTLOOP_EXECUTION"
VARIABLE_MODE = "driftloop_execution"
ENV_CONFIG = "DRIFTLOOP_K8S_CONFIG"
ENV_IMAGE = "DRIFTLOOP_PIPELINE_IMAGE"
DEFAULT_CONFIG = Path(__file__).resolve().parent / "config" / "kubernetes.yaml"


class ExecutionConfigError(ValueError):
    """The execution mode or the pod configuration is not usable; the message says what to fix."""


def execution_mode() -> str:
    """``local`` or ``kubernetes``: the environment wins, then the Airflow Variable, then local."""
    value = os.environ.get(ENV_MODE)
    source = f"environment variable {ENV_MODE}"
    if not value:
        value, source = _variable_mode(), f"Airflow Variable {VARIABLE_MODE}"
    mode = (value or "local").strip().lower()
    if mode not in MODES:
        raise ExecutionConfigError(f"{source} is {value!r}: set it to one of {', '.join(MODES)}")
    return mode


def _variable_mode() -> str | None:
    """The Variable, if an Airflow metadata service can be asked; None otherwise.

    Outside a DAG processor or a task (a plain ``python`` import, a unit test)
    there is no one to ask, and the default applies.
    """
    try:
        from airflow.sdk import Variable

        return Variable.get(VARIABLE_MODE, default=None)
    except Exception as exc:  # no metadata service reachable at parse time
        log.debug("Airflow Variable %s not readable (%s): using the default", VARIABLE_MODE, exc)
        return None


@dataclass(frozen=True)
class PodSettings:
    """Everything a heavy task's pod is built from, per task kind (pipelines/config/kubernetes.yaml)."""

    image: str
    namespace: str
    service_account: str
    image_pull_policy: str = "IfNotPresent"
    config_maps: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    lake_claim: str = ""
    lake_mount_path: str = "/var/lib/driftloop"
    lake: LakeSettings = field(default_factory=LakeSettings)
    run_as_user: int = 50000
    startup_timeout_seconds: int = 600
    resources: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    kind_env: dict[str, dict[str, str]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    def resources_for(self, kind: str) -> dict[str, dict[str, str]]:
        if kind not in self.resources:
            raise ExecutionConfigError(
                f"no resources for task kind {kind!r} in the pod config: add it under 'kinds'"
            )
        return self.resources[kind]


def load_pod_settings(path: str | Path | None = None) -> PodSettings:
    """Read the pod config (``DRIFTLOOP_K8S_CONFIG`` points at a mounted copy in a cluster)."""
    import yaml

    config_path = Path(path or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG)
    if not config_path.is_file():
        raise ExecutionConfigError(f"pod config {config_path} does not exist (set {ENV_CONFIG})")
    raw = yaml.safe_load(config_path.read_text()) or {}
    lake_section = raw.get("lake") or {}
    try:
        lake = lake_settings(lake_section)
    except LakeConfigError as exc:
        raise ExecutionConfigError(f"pod config {config_path}: {exc}") from exc
    try:
        kinds = raw["kinds"]
        settings = PodSettings(
            image=os.environ.get(ENV_IMAGE) or raw["image"],
            namespace=raw["namespace"],
            service_account=raw["service_account"],
            image_pull_policy=raw.get("image_pull_policy", "IfNotPresent"),
            config_maps=tuple(raw.get("config_maps", ())),
            secrets=tuple(raw.get("secrets", ())),
            env={str(k): str(v) for k, v in (raw.get("env") or {}).items()},
            lake_claim=lake_section.get("claim_name", ""),
            lake_mount_path=lake_section.get("mount_path", "/var/lib/driftloop"),
            lake=lake,
            run_as_user=int(raw.get("run_as_user", 50000)),
            startup_timeout_seconds=int(raw.get("startup_timeout_seconds", 600)),
            resources={kind: spec["resources"] for kind, spec in kinds.items()},
            kind_env={
                kind: {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
                for kind, spec in kinds.items()
            },
            labels={str(k): str(v) for k, v in (raw.get("labels") or {}).items()},
        )
    except KeyError as exc:
        raise ExecutionConfigError(f"pod config {config_path} lacks the key {exc}") from exc
    if lake.mode == "volume" and not settings.lake_claim:
        raise ExecutionConfigError(
            f"pod config {config_path}: the volume lake needs lake.claim_name "
            "(or choose the object-storage lake: lake.store s3)"
        )
    missing = [kind for kind in HEAVY_KINDS if kind not in settings.resources]
    if missing:
        raise ExecutionConfigError(f"pod config {config_path} has no entry for {missing}")
    return settings


def heavy_task(kind: str, **task_kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
    """``@task`` in local mode; a pod per task instance in kubernetes mode.

    ``kind`` (featurize, tune, refit, drift) picks the pod's resources and extra
    environment. ``task_kwargs`` go to the task in both modes (retries,
    ``max_active_tis_per_dagrun``...), so the DAG reads the same either way.
    """
    if kind not in HEAVY_KINDS:
        raise ExecutionConfigError(f"unknown heavy task kind {kind!r}; one of {HEAVY_KINDS}")
    if execution_mode() == "local":
        return lake_task(**task_kwargs)
    from pipelines.pod_operator import pod_task

    return pod_task(kind, load_pod_settings(), **task_kwargs)


def lake_task(func: Callable[..., Any] | None = None, **task_kwargs: Any) -> Any:
    """``@task`` for a step the Airflow worker runs itself, staged when the lake is in S3.

    With ``DRIFTLOOP_LAKE=s3`` the worker has no shared lake either: the step
    runs in ``pipelines.lake.staged`` as the task pods do (the mode is read
    when the step runs). With the volume lake it is exactly ``@task``.
    """
    from airflow.sdk import task

    from pipelines.lake import staged_task

    def decorator(function: Callable[..., Any]) -> Any:
        return task(**task_kwargs)(staged_task(function))

    return decorator(func) if func is not None else decorator
