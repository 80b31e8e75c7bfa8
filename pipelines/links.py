"""Extra links on a task's page: what the task produced, one click away.

A task that produces something a person wants to open (an MLflow run, a
registered model version, a drift report, Great Expectations Data Docs, a
quarantine file) calls `publish_link(kind, url)`. That writes a URL line to
the task log and stores the URL in an XCom; the task's `ArtifactLink` (see
`LINKS`, attached in the DAG files) reads it back when the task finishes, and
Airflow shows it as a button on the task instance page.

Airflow 3 computes an operator's links on the worker right after the task ran
and keeps them as XComs for the UI, so the link classes need no registration
with the API server.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

log = logging.getLogger(__name__)

LINKS: dict[str, str] = {
    "mlflow_run": "MLflow run",
    "mlflow_search": "MLflow search (all trials)",
    "model_version": "Registered model version",
    "drift_report": "Evidently drift report",
    "data_docs": "Great Expectations Data Docs",
    "quarantine": "Quarantined rows",
}
"""Kind → the button's label."""


def _url_key(kind: str) -> str:
    return f"url_{kind}"


class ArtifactLink(BaseOperatorLink):
    """The URL a task published with `publish_link(kind, ...)`, or none."""

    def __init__(self, kind: str) -> None:
        if kind not in LINKS:
            raise KeyError(f"unknown link kind {kind!r}; known: {sorted(LINKS)}")
        self.kind = kind

    @property
    def name(self) -> str:
        return LINKS[self.kind]

    @property
    def xcom_key(self) -> str:
        return f"_link_{self.kind}"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        return str(XCom.get_value(ti_key=ti_key, key=_url_key(self.kind)) or "")


def links(*kinds: str) -> list[ArtifactLink]:
    return [ArtifactLink(kind) for kind in kinds]


def mlflow_ui_url() -> str | None:
    """The MLflow UI's base URL when tracking goes through a server, else None."""
    from core.settings import get_settings

    uri = get_settings().mlflow_tracking_uri
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else None


def mlflow_run_url(run_id: str, experiment_id: str, artifact: str | None = None) -> str | None:
    base = mlflow_ui_url()
    if base is None:
        return None
    url = f"{base}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"{url}/artifacts/{quote(artifact)}" if artifact else url


def model_version_url(model_name: str, version: str) -> str | None:
    base = mlflow_ui_url()
    return None if base is None else f"{base}/#/models/{quote(model_name)}/versions/{version}"


def publish_link(kind: str, url: str | None, what: str = "") -> None:
    """Log `<label>: <url>` and hand the URL to the task's extra link.

    Outside a running Airflow task (a unit test, a CLI) only the log line is
    written. Without a URL (e.g. MLflow tracking to a local file), `what` is
    logged instead so the log still says where the thing is.
    """
    label = LINKS[kind]
    if not url:
        if what:
            log.info("%s: %s", label, what)
        return
    log.info("%s: %s", label, url)
    try:
        from airflow.sdk import get_current_context

        get_current_context()["ti"].xcom_push(key=_url_key(kind), value=url)
    except Exception as exc:  # a link must never fail the task that produced the thing
        # Outside a running task (a test, a CLI, a pod without XCom access)
        # the log line above is all there is.
        log.debug("extra link %s not stored: %s", kind, exc)
