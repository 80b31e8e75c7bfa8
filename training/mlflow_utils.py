"""The one adapter between driftloop and MLflow (tracking + model registry).

Everything that knows about tracking URIs, artifact locations, tag names and
how a run's model is found lives here, so the stage modules stay about
training and the switch from the embedded SQLite store to an MLflow server is
configuration (MLFLOW_TRACKING_URI), not code.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException

from core.settings import REPO_ROOT, get_settings

log = logging.getLogger(__name__)

# Tag names shared by runs and model versions (serving and the CLI read them).
TAG_CONTRACT = "feature_contract_version"
TAG_FINGERPRINT = "feature_fingerprint"
TAG_DATA_SHA = "data_sha256"
TAG_GIT = "git_commit"
TAG_MODEL_URI = "driftloop.model_uri"
TAG_FEATURES_DIR = "features_dir"
TAG_USE_CASE = "driftloop.use_case"

SERVER_SCHEMES = ("http", "https", "databricks")
PACKAGES = ("scikit-learn", "pandas", "numpy", "scipy", "mlflow", "cloudpickle")


class RunModelNotFoundError(LookupError):
    """A run has no logged model the registry or evaluation could use."""


def _sqlite_path(uri: str) -> Path | None:
    """Filesystem path of a `sqlite:///...` URI (None for other URIs or in-memory)."""
    if not uri.startswith("sqlite:///"):
        return None
    raw = uri[len("sqlite:///") :].split("?", 1)[0]
    if not raw or raw == ":memory:":
        return None
    # sqlite:////abs/file.db is absolute, sqlite:///file.db relative to the cwd (SQLAlchemy).
    return Path(raw)


def configure(tracking_uri: str | None = None) -> str:
    """Point MLflow (tracking and registry) at `tracking_uri` or the settings' URI.

    For a `sqlite:///` URI the folder of the database file is created first,
    because SQLite will not create directories. Returns the URI in use.
    """
    uri = tracking_uri or get_settings().mlflow_tracking_uri
    db_path = _sqlite_path(uri)
    if db_path is not None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def is_server_uri(uri: str) -> bool:
    """True when the tracking URI is an MLflow server that manages artifacts itself."""
    return urlparse(uri).scheme in SERVER_SCHEMES


def client() -> MlflowClient:
    """A client bound to the configured tracking and registry URI."""
    uri = mlflow.get_tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _artifact_folder_name(experiment: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", experiment).strip("-") or "experiment"


def get_or_create_experiment(name: str) -> str:
    """Experiment id for `name`, creating (or restoring a deleted) one.

    With a local store (sqlite/file/database URI) artifacts go to
    `<settings.artifacts_dir>/<experiment>` instead of `./mlruns` under the
    current directory; an MLflow server keeps choosing its own location.
    """
    mlflow_client = client()
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            mlflow_client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    artifact_location = None
    if not is_server_uri(mlflow.get_tracking_uri()):
        folder = get_settings().artifacts_dir / _artifact_folder_name(name)
        folder.mkdir(parents=True, exist_ok=True)
        artifact_location = folder.as_uri()
    return mlflow_client.create_experiment(name, artifact_location=artifact_location)


def git_commit() -> str | None:
    """Commit of the code being run: GIT_COMMIT env (images), else `git rev-parse HEAD`."""
    if os.environ.get("GIT_COMMIT"):
        return os.environ["GIT_COMMIT"]
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages the model depends on (missing ones skipped)."""
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def pip_requirements() -> list[str]:
    """Exact pins for the logged model's environment.

    Given explicitly because the pipeline holds only scikit-learn/numpy
    objects, and MLflow's own inference re-loads the model in a subprocess,
    which costs seconds per logged model.
    """
    return [f"{name}=={version}" for name, version in package_versions().items()]


def model_uri_for_run(run_id: str) -> str:
    """URI of the model a run logged (the `models:/m-...` URI in MLflow 3).

    Looks at the tag train_model writes, then the run's logged-model outputs,
    so runs logged by other code (a tuner) work too.
    """
    mlflow_client = client()
    try:
        run = mlflow_client.get_run(run_id)
    except MlflowException as exc:
        raise RunModelNotFoundError(
            f"run {run_id!r} not found at {mlflow.get_tracking_uri()}"
        ) from exc
    tagged = run.data.tags.get(TAG_MODEL_URI)
    if tagged:
        return tagged
    outputs = run.outputs.model_outputs if run.outputs else []
    if len(outputs) == 1:
        return f"models:/{outputs[0].model_id}"
    if outputs:
        for output in outputs:
            if mlflow_client.get_logged_model(output.model_id).name == "model":
                return f"models:/{output.model_id}"
    raise RunModelNotFoundError(
        f"run {run_id!r} logged no model (no {TAG_MODEL_URI!r} tag and no model outputs); "
        "train it with training.train.train_model"
    )


def log_metrics_to_run(run_id: str, metrics: dict[str, float], prefix: str = "") -> None:
    """Log metrics to a finished run without reopening it (one batch call)."""
    now = int(time.time() * 1000)
    batch = [Metric(f"{prefix}{key}", float(value), now, 0) for key, value in metrics.items()]
    client().log_batch(run_id, metrics=batch)


def set_run_tags(run_id: str, tags: dict[str, Any]) -> None:
    """Set several tags on a run in one call (values stringified)."""
    client().log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])


def set_version_tags(model_name: str, version: str, tags: dict[str, Any]) -> None:
    """Set tags on a model version (the registry has no batch call)."""
    mlflow_client = client()
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(model_name, version, key, str(value))


def alias_version(model_name: str, alias: str) -> Any | None:
    """The ModelVersion behind `alias`, or None when the alias (or the model) does not exist."""
    try:
        return client().get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
