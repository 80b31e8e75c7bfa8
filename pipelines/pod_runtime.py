"""Entry point of a heavy task's pod: ``python -m pipelines.pod_runtime``.

Reads the function, its arguments and its task context from the environment
(set by ``pipelines.pod_operator.PodTaskOperator``), runs the function and
writes its JSON return value where the XCom sidecar reads it. Logs go to
stdout, which the operator streams into the Airflow task log.

With the lake in object storage (``DRIFTLOOP_LAKE=s3``, ``pipelines.lake``)
the function runs inside ``staged``: the lake paths its arguments and Params
name are downloaded to the pod's scratch lake first, and what it wrote is
uploaded once it returned; a failing function uploads nothing.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

ENV_FUNCTION = "DRIFTLOOP_TASK_FUNCTION"
ENV_SOURCE = "DRIFTLOOP_TASK_SOURCE"
ENV_ARGS = "DRIFTLOOP_TASK_ARGS"
ENV_CONTEXT = "DRIFTLOOP_TASK_CONTEXT"
ENV_XCOM_PATH = "DRIFTLOOP_XCOM_PATH"
DEFAULT_XCOM_PATH = "/airflow/xcom/return.json"
DATETIME_KEYS = ("logical_date", "data_interval_start", "data_interval_end")

log = logging.getLogger("driftloop.pod")


class PodPayloadError(RuntimeError):
    """The pod was started without (or with a broken) task payload."""


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise PodPayloadError(
            f"{name} is not set: this container runs a task function that "
            "PodTaskOperator attaches to the pod; it is not meant to be started by hand"
        )
    return value


def load_context(raw: str) -> dict[str, Any]:
    context: dict[str, Any] = json.loads(raw)
    for key in DATETIME_KEYS:
        if isinstance(context.get(key), str):
            context[key] = datetime.fromisoformat(context[key])
    return context


def run_payload() -> Any:
    """Define the shipped function with a pod-side ``get_current_context`` and call it."""
    name = _required(ENV_FUNCTION)
    source = _required(ENV_SOURCE)
    arguments = json.loads(_required(ENV_ARGS))
    context = load_context(os.environ.get(ENV_CONTEXT) or '{"params": {}}')
    namespace: dict[str, Any] = {
        "__name__": "driftloop_pod_task",
        "Any": Any,
        "get_current_context": lambda: context,
    }
    code = compile("from __future__ import annotations\n" + source, f"<task {name}>", "exec")
    exec(code, namespace)
    if not callable(namespace.get(name)):
        raise PodPayloadError(f"the shipped source does not define a function named {name!r}")
    log.info(
        "running %s for %s/%s (run %s)",
        name,
        context.get("dag_id"),
        context.get("task_id"),
        context.get("run_id"),
    )
    return namespace[name](*arguments.get("args", []), **arguments.get("kwargs", {}))


def lake_values() -> list[Any]:
    """What names the lake paths this task reads: its arguments and its run's Params."""
    arguments = json.loads(os.environ.get(ENV_ARGS) or "{}")
    context = json.loads(os.environ.get(ENV_CONTEXT) or "{}")
    return [arguments, context.get("params") or {}]


def write_result(result: Any, path: Path) -> None:
    """Write the return value as JSON (the sidecar reads ``return.json`` into XCom)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))


def main() -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from pipelines.lake import staged

    with staged(lake_values()):
        result = run_payload()
    target = Path(os.environ.get(ENV_XCOM_PATH, DEFAULT_XCOM_PATH))
    write_result(result, target)
    log.info("result written to %s", target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
