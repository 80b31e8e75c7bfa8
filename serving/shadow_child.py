"""The shadow process: where challengers score sampled live rows, away from the request path.

`main` is the entry point of the child process `serving.shadow_process.ShadowProcess`
starts (spawned, never forked: the API worker has threads and an event loop) for one API
worker. It lowers its own CPU priority first (`os.nice`, DRIFTLOOP_SHADOW_NICE), so on a busy
machine it runs on what the request path leaves over, and its interpreter is its own: scoring
never holds the API worker's GIL.

This module is deliberately light (no numpy, scikit-learn or MLflow): the spawned process
imports it to start, and lowers its priority *before* importing the scoring code. On Linux a
niceness belongs to a thread and new threads inherit their creator's, so every thread started
later (the model loader, the log writer, BLAS and OpenMP pools) runs at the lowered priority;
the math libraries are also held to one thread (unless the environment says otherwise), so
the shadow process uses at most about one core. The scoring itself is `serving.shadow_lanes`.

Protocol (two one-way pipes). From the parent, on `work`: `("rows", use_case, [(request_id,
item, champion_version), ...])` (one message per batch), `("sync", token)` (score what came
before, write the logs, answer `("synced", token)`), `("stop", seconds)`. To the parent, on
`status`: `("hello", pid, niceness)`, `("version", use_case, version | None)`, `("done",
use_case, rows, scored, {reason: skipped}, busy_seconds)` after each batch, and `("log",
use_case, written, dropped, depth)` from the log writer. The parent turns these into the
Prometheus metrics and `/model-info` (the child never touches the metrics registry, which in
multi-worker mode is a directory of per-process files).
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

log = logging.getLogger(__name__)

_ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class ShadowChildConfig:
    """Everything the child needs, as plain picklable data (it reads no settings of its own)."""

    use_cases: tuple[tuple[str, str], ...]  # (use case, registered model name)
    alias: str
    tracking_uri: str
    default_threshold: float
    poll_seconds: float
    nice: int
    log_enabled: bool
    log_url: str | None
    log_flush_seconds: float
    log_batch_rows: int
    log_max_queue: int
    log_level: str = "INFO"
    log_json: bool = True
    environment: dict[str, str] = field(default_factory=dict)


def lower_priority(increment: int) -> int:
    """Add `increment` to this process's niceness (the OS caps it at 19); the niceness now."""
    if increment > 0:
        try:
            return os.nice(increment)
        except OSError as error:
            log.warning("shadow: could not lower the process priority: %s", error)
    return os.nice(0)


def main(config: ShadowChildConfig, work: Connection, status: Connection) -> None:
    """Entry point of the spawned shadow process: lower the priority, then import and serve.

    SIGTERM and SIGINT are ignored: a terminal's Ctrl-C or a stop signal sent to the whole
    process group must not kill the child before the worker had it write what it holds; the
    worker stops it (and it stops on its own when the worker's end of the pipe closes).
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    niceness = lower_priority(config.nice)
    for name in _ONE_THREAD:
        os.environ.setdefault(name, "1")
    os.environ.update(config.environment)
    from serving.logs import configure_logging

    configure_logging(config.log_level, config.log_json)
    from serving.shadow_lanes import serve

    serve(config, work, status, niceness)
