"""One shadow-scoring child process per API worker: start, feed, watch, restart, stop.

Why a process: scoring in a thread of the API worker holds the worker's interpreter lock, and
every request waiting for it waits out the challenger's work; a quiet benchmark measured the
champion's p99 +89 % with half the rows shadow-scored by such a thread (capped to 10 % duty),
which still scored only a seventh of them. A child process has its own interpreter, and at a
low CPU priority (`os.nice`, DRIFTLOOP_SHADOW_NICE, default 19) the kernel gives it only the
CPU the request path leaves over.

Why one child for all of a worker's use cases (not one per use case): each child is a whole
interpreter with scikit-learn, pandas and the MLflow client imported (a few seconds of start-up
and ~150 MB each), and shadow scoring is leftover-CPU work, so several children would only
compete with each other for the same leftovers. One child holds every use case's challenger
and scores their batches in turn; a failure scoring one use case's batch is caught there and
counted (`reason="error"`), only a crash of the whole child stops them all, and it is restarted.

The child is *spawned* (a fresh interpreter), never forked: the worker has threads and an event
loop, and a fork copies their locks in whatever state they are. Two threads here, both idle
most of the time and neither on the request path:
- the feeder wakes every DRIFTLOOP_SHADOW_INTERVAL_SECONDS (or when a queue holds a full batch)
  and sends each use case's queued rows to the child, one pickle/send per batch of up to
  DRIFTLOOP_SHADOW_BATCH_ROWS rows. The pipe is the back-pressure: while the child is busy the
  send waits (in the kernel, without the interpreter lock), rows pile up in the bounded queues
  and the request path skips what does not fit (`shadow_skipped{reason="queue_full"}`);
- the supervisor starts the child, reads its reports (challenger version, rows scored and
  skipped, busy seconds, shadow-log writes) into `ShadowScorer` and the metrics, and when the
  child dies logs it, counts it (`driftloop_shadow_process_restarts_total`; rows it held are
  counted as skipped, `reason="error"`) and starts a new one after a back-off (1 s, doubling
  up to 60 s; back to 1 s once a child lived a minute). The API keeps serving meanwhile.

Shutdown (`stop`): what is queued is sent and written within the graceful-shutdown time, then
the child is told to stop (terminated if it does not).
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from serving.metrics import ServingMetrics
from serving.prediction_log import log_schema
from serving.shadow import ShadowScorer
from serving.shadow_child import ShadowChildConfig, main

log = logging.getLogger(__name__)

RESTART_SECONDS = 1.0
MAX_RESTART_SECONDS = 60.0
HEALTHY_SECONDS = 60.0


@dataclass
class _Child:
    """One running child and its pipes; `alive` turns False once (under the process's lock)."""

    process: Any
    work: Connection
    status: Connection
    started: float
    alive: bool = True
    broken: bool = False  # a send failed: the feeder leaves it alone
    pid: int | None = None
    niceness: int | None = None
    sync_sent: int = 0
    in_flight: dict[str, int] = field(default_factory=dict)


class ShadowProcess:
    """The shadow-scoring child of one API worker (see the module docstring)."""

    def __init__(
        self,
        config: ShadowChildConfig,
        scorers: list[ShadowScorer],
        metrics: ServingMetrics,
        *,
        batch_rows: int = 256,
        interval_seconds: float = 0.5,
        restart_seconds: float = RESTART_SECONDS,
    ) -> None:
        self.config = config
        self.scorers = {scorer.use_case.name: scorer for scorer in scorers}
        self.metrics = metrics
        self.batch_rows = batch_rows
        self.interval_seconds = interval_seconds
        self.restart_seconds = restart_seconds
        self.restarts = 0
        self._context = multiprocessing.get_context("spawn")
        self._child: _Child | None = None
        self._lock = threading.Lock()  # child life and in-flight counts; never held while sending
        self._send_lock = threading.Lock()  # one sender on the work pipe at a time
        self._changed = threading.Condition()  # syncs answered, children started
        self._sync_wanted = 0
        self._synced = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._feeding = True
        self._feeder: threading.Thread | None = None
        self._supervisor: threading.Thread | None = None
        # The shadow tables' writer queue depth, which the child reports, per use case.
        self._log_depth = {
            name: metrics.log_queue_depth.labels(log_schema(name).shadow().predictions_table)
            for name in self.scorers
        }
        for scorer in scorers:
            scorer.process = self
            scorer._wake = self._wake.set

    # ---- what the tests and /model-info read ---------------------------------------------

    @property
    def pid(self) -> int | None:
        """The running child's process id, as it reported it (None between children)."""
        child = self._child
        return child.pid if child is not None and child.alive else None

    @property
    def niceness(self) -> int | None:
        """The running child's niceness, as it reported it after lowering its priority."""
        child = self._child
        return child.niceness if child is not None and child.alive else None

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self._supervisor is not None:
            return
        self._supervisor = threading.Thread(
            target=self._supervise, name="driftloop-shadow-supervisor", daemon=True
        )
        self._feeder = threading.Thread(
            target=self._feed, name="driftloop-shadow-feeder", daemon=True
        )
        self._supervisor.start()
        self._feeder.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row queued so far is scored and written by the child; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            self._sync_wanted += 1
            token = self._sync_wanted
            self._wake.set()
            while self._synced < token:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.1))
                self._wake.set()
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Send and write what is queued (within `timeout`), then stop the child."""
        deadline = time.monotonic() + timeout
        child = self._child
        if child is not None and child.alive and not self.flush(max(0.0, 0.8 * timeout)):
            log.warning("shadow: rows still queued at shutdown were not all scored")
        self._stopping.set()
        self._feeding = False
        self._wake.set()
        if self._feeder is not None:
            self._feeder.join(max(0.1, deadline - time.monotonic()))
        child = self._child
        if child is not None and child.alive:
            close = max(0.1, deadline - time.monotonic() - 1.0)
            if self._send_lock.acquire(timeout=1.0):
                try:
                    child.work.send(("stop", close))
                except (OSError, ValueError):
                    pass
                finally:
                    self._send_lock.release()
            child.process.join(max(0.1, deadline - time.monotonic()))
            if child.process.is_alive():
                log.warning("shadow: the shadow process did not stop in time; terminating it")
                child.process.terminate()
                child.process.join(2.0)
                if child.process.is_alive():
                    child.process.kill()
                    child.process.join(2.0)
        if self._supervisor is not None:
            self._supervisor.join(5.0)

    # ---- the supervisor thread -----------------------------------------------------------

    def _spawn(self) -> _Child:
        parent_work, child_work = self._context.Pipe(duplex=False)
        child_status, parent_status = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=main,
            args=(self.config, parent_work, parent_status),
            name="driftloop-shadow",
            daemon=True,
        )
        process.start()
        parent_work.close()  # the child's ends: closed here, so a dead child reads as EOF
        parent_status.close()
        child = _Child(process, child_work, child_status, time.monotonic())
        child.in_flight = {name: 0 for name in self.scorers}
        return child

    def _supervise(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                child = self._spawn()
            except Exception:
                log.exception("shadow: starting the shadow process failed")
                child = None
            if child is not None:
                with self._changed:
                    self._child = child
                    self._changed.notify_all()
                self._read_reports(child)
                child.process.join(5.0)
                self._retire(child)
                if self._stopping.is_set():
                    return
                lived = time.monotonic() - child.started
                failures = 0 if lived >= HEALTHY_SECONDS else failures
                log.error(
                    "shadow: the shadow process (pid %s) exited with code %s after %.0f s; "
                    "restarting it",
                    child.process.pid,
                    child.process.exitcode,
                    lived,
                )
            failures += 1
            self.restarts += 1
            self.metrics.shadow_restarts.inc()
            delay = min(MAX_RESTART_SECONDS, self.restart_seconds * 2 ** (failures - 1))
            self._stopping.wait(delay)

    def _read_reports(self, child: _Child) -> None:
        while True:
            try:
                message = child.status.recv()
            except (EOFError, OSError):
                return
            try:
                self._apply(child, message)
            except Exception:
                log.exception("shadow: could not apply the report %r", message[:2])

    def _apply(self, child: _Child, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "done":
            _, name, rows, scored, skipped, busy = message
            with self._lock:
                child.in_flight[name] -= rows
            self.scorers[name].reported(scored, skipped, busy)
        elif kind == "version":
            self.scorers[message[1]].version = message[2]
        elif kind == "log":
            _, name, written, dropped, depth = message
            if written:
                self.metrics.log_written.inc(written)
            if dropped:
                self.metrics.log_dropped.inc(dropped)
            if depth is not None:
                self._log_depth[name].set(depth)
        elif kind == "synced":
            with self._changed:
                self._synced = max(self._synced, message[1])
                self._changed.notify_all()
        elif kind == "hello":
            child.pid, child.niceness = message[1], message[2]
            with self._changed:
                self._changed.notify_all()

    def _retire(self, child: _Child) -> None:
        """The child is gone: the rows it held are lost (counted), no challenger until the next."""
        with self._lock:
            child.alive = False
            lost = dict(child.in_flight)
            child.in_flight = {name: 0 for name in lost}
        for name, rows in lost.items():
            scorer = self.scorers[name]
            scorer.version = None
            if rows > 0 and not self._stopping.is_set():
                scorer.reported(0, {"error": rows}, 0.0)
        for connection in (child.work, child.status):
            connection.close()

    # ---- the feeder thread ---------------------------------------------------------------

    def _feed(self) -> None:
        while self._feeding:
            self._wake.wait(self.interval_seconds)
            self._wake.clear()
            self._send_queued()

    def _send_queued(self) -> None:
        child = self._child
        if child is None or not child.alive or child.broken:
            return  # rows wait in the bounded queues for the next child
        # Read before draining: a flush asked for by now covers rows queued before it, and
        # those are all sent below, ahead of the sync.
        wanted = self._sync_wanted
        for name, scorer in self.scorers.items():
            while scorer.depth:
                with self._lock:
                    if not child.alive:
                        return
                    batch = scorer.take(self.batch_rows)
                    child.in_flight[name] += len(batch)
                if not self._send(child, ("rows", name, batch)):
                    return
        if wanted > child.sync_sent and self._send(child, ("sync", wanted)):
            child.sync_sent = wanted

    def _send(self, child: _Child, message: tuple[Any, ...]) -> bool:
        with self._send_lock:
            try:
                child.work.send(message)
            except (OSError, ValueError):
                child.broken = True  # the supervisor sees the child's end and counts its rows
                return False
        return True
