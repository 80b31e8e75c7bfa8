"""`python -m serving`: run the API under uvicorn with `ServingSettings`.

One worker runs the app object built here; several workers each build their
own app from the import string (uvicorn's factory mode), because an app object
cannot be handed to spawned workers. With several workers, Prometheus
multiprocess mode is switched on (a fresh `PROMETHEUS_MULTIPROC_DIR` unless
one is given) so `/metrics` reports all of them, whichever answers.

SIGTERM (or Ctrl-C) stops accepting connections, lets in-flight requests
finish for up to `graceful_shutdown_seconds`, then runs the app's shutdown,
which writes every queued prediction-log row.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from types import FrameType
from typing import Any

import uvicorn

from serving.config import ServingSettings
from serving.logs import configure_logging, log_config
from serving.metrics import MULTIPROC_ENV


def _prepare_multiprocess_metrics() -> str | None:
    """A clean folder for the workers' metric files; returns it if this call created it."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):
            if name.endswith(".db"):
                os.remove(os.path.join(given, name))
        return None
    created = tempfile.mkdtemp(prefix="driftloop-metrics-")
    os.environ[MULTIPROC_ENV] = created
    return created


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    """Uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; end with status 0 then."""
    sys.exit(0)


def main() -> None:
    settings = ServingSettings()
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:  # keep a handler someone else set
        signal.signal(signal.SIGTERM, _exit_cleanly)
    configure_logging(settings.log_level, settings.log_json)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": log_config(settings.log_level, settings.log_json),
        "access_log": False,  # the app writes its own JSON access line per request
        "timeout_graceful_shutdown": int(settings.graceful_shutdown_seconds),
    }
    if settings.workers > 1:
        created = _prepare_multiprocess_metrics()
        try:
            uvicorn.run(
                "serving.worker:create_app",
                factory=True,
                workers=settings.workers,
                timeout_worker_healthcheck=settings.worker_healthcheck_timeout_seconds,
                **common,
            )
        finally:
            if created:
                shutil.rmtree(created, ignore_errors=True)
    else:
        from serving.worker import create_app

        uvicorn.run(create_app(settings), **common)


if __name__ == "__main__":
    main()
