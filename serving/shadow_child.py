"""The shadow process: where challengers score sampled live rows, away from the request path.

`run_child` is the entry point of the child process `serving.shadow_process.ShadowProcess`
starts (spawned, never forked: the API worker has threads and an event loop) for one API
worker. It lowers its own CPU priority first (`os.nice`, DRIFTLOOP_SHADOW_NICE), so on a busy
machine it runs on what the request path leaves over, and its interpreter is its own: scoring
never holds the API worker's GIL.

In the child, per use case with shadow scoring on:
- a `ModelHolder` follows `<model>@<shadow alias>` (polled by a loader thread at the reload
  interval, swapped when the alias moves, cleared - scoring paused - when it is removed);
- a `PredictionLog` writes the use case's shadow table, exactly the rows the champion's
  request ids are paired with (`serving.prediction_store.read_shadow_pairs`): request id, time,
  model name, challenger version, P(label 1) and the label at the challenger's own threshold.

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

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from serving.logs import configure_logging
from serving.model import ModelHolder, ModelLoadError, ModelNotFoundError
from serving.prediction_log import PredictionLog, log_schema
from serving.usecase import served_use_case

log = logging.getLogger(__name__)

Row = tuple[str, Any, str]  # request id, raw item (plain data), champion version


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


class _Reporter:
    """Sends status messages to the parent from any thread of the child (one send at a time)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        # OSError: the parent is gone; the main loop notices on its own pipe.
        with self._lock, contextlib.suppress(OSError, ValueError):
            self._connection.send(message)


class _Lane:
    """One use case in the child: its challenger, its shadow-table writer, its scoring."""

    def __init__(self, name: str, model_name: str, config: ShadowChildConfig, reporter: _Reporter):
        self.name = name
        self.model_name = model_name
        self.config = config
        self.reporter = reporter
        self.use_case = served_use_case(name)
        self.holder = ModelHolder(config.tracking_uri, gc_freeze=False, use_case=name)
        self.prediction_log: PredictionLog | None = None
        self._depth = -1
        if config.log_enabled:
            self.prediction_log = PredictionLog(
                config.log_url,
                schema=log_schema(name).shadow(),
                flush_seconds=config.log_flush_seconds,
                batch_rows=config.log_batch_rows,
                max_queue=config.log_max_queue,
                on_written=lambda n: reporter.send(("log", name, n, 0, None)),
                on_dropped=lambda n: reporter.send(("log", name, 0, n, None)),
                on_depth=self._report_depth,
            )

    def _report_depth(self, depth: int) -> None:
        if depth != self._depth:  # the writer calls this every flush interval, mostly unchanged
            self._depth = depth
            self.reporter.send(("log", self.name, 0, 0, depth))

    def follow_alias(self) -> None:
        """One poll of `<model>@<alias>`: load a new version, pause when the alias is gone."""
        holder, alias = self.holder, self.config.alias
        try:
            loaded = holder.reload_if_changed(self.model_name, alias)
            if loaded is not None:
                log.info(
                    "shadow: %s version %s (alias %s) scores sampled %s traffic in process %d",
                    self.model_name,
                    loaded.version,
                    alias,
                    self.name,
                    os.getpid(),
                )
                self.reporter.send(("version", self.name, loaded.version))
        except ModelNotFoundError as error:
            if holder.current is not None:
                log.info("shadow: %s@%s is gone; shadow scoring paused", self.model_name, alias)
            holder.clear(str(error))
            self.reporter.send(("version", self.name, None))
        except ModelLoadError as error:
            log.warning("shadow: %s", error)
        except Exception:
            log.exception("shadow: loading %s@%s failed unexpectedly", self.model_name, alias)

    def score(self, rows: list[Row]) -> None:
        """Score one batch with the challenger, queue its shadow-table rows, report."""
        started = time.perf_counter()
        skipped: dict[str, int] = {}
        scored = 0
        model = self.holder.current
        if model is None:
            skipped["no_challenger"] = len(rows)
        else:
            # The challenger became the champion meanwhile: nothing to compare, not counted.
            picked = [row for row in rows if row[2] != model.version]
            try:
                if picked:
                    columns = self.use_case.featurize([item for _, item, _ in picked])
                    probabilities = model.scorer.score(columns)
                    self._record(model, picked, probabilities)
                scored = len(picked)
            except Exception:
                log.exception("shadow scoring %d rows with %s failed", len(picked), model.version)
                skipped["error"] = len(picked)
        busy = time.perf_counter() - started
        self.reporter.send(("done", self.name, len(rows), scored, skipped, busy))

    def _record(self, model: Any, rows: list[Row], probabilities: Any) -> None:
        if self.prediction_log is None:
            return
        ts_us = time.time_ns() // 1000
        threshold = model.threshold(self.config.default_threshold)  # the challenger's own
        for (request_id, _, _), probability in zip(rows, probabilities, strict=True):
            p = float(probability)
            self.prediction_log.record(
                (request_id, ts_us, model.name, model.version, p, int(p >= threshold))
            )

    def flush(self, timeout: float) -> None:
        if self.prediction_log is not None:
            self.prediction_log.flush(timeout)


def _follow(lanes: list[_Lane], poll_seconds: float, stopping: threading.Event) -> None:
    while not stopping.is_set():
        for lane in lanes:
            lane.follow_alias()
        stopping.wait(poll_seconds)


def lower_priority(increment: int) -> int:
    """Add `increment` to this process's niceness (the OS caps it at 19); the niceness now."""
    if increment > 0:
        try:
            return os.nice(increment)
        except OSError as error:
            log.warning("shadow: could not lower the process priority: %s", error)
    return os.nice(0)


def run_child(config: ShadowChildConfig, work: Connection, status: Connection) -> None:
    """The child's main loop: score what the parent sends until told to stop (or orphaned)."""
    niceness = lower_priority(config.nice)
    configure_logging(config.log_level, config.log_json)
    os.environ.update(config.environment)
    reporter = _Reporter(status)
    reporter.send(("hello", os.getpid(), niceness))
    lanes = {name: _Lane(name, model, config, reporter) for name, model in config.use_cases}
    for lane in lanes.values():
        if lane.prediction_log is not None:
            lane.prediction_log.start()
    stopping = threading.Event()
    loader = threading.Thread(
        target=_follow,
        args=(list(lanes.values()), config.poll_seconds, stopping),
        name="driftloop-shadow-loader",
        daemon=True,
    )
    loader.start()
    close_seconds = 10.0
    try:
        while True:
            try:
                message = work.recv()
            except (EOFError, OSError):
                log.warning("shadow: the API worker is gone; the shadow process stops")
                break
            kind = message[0]
            if kind == "rows":
                lanes[message[1]].score(message[2])
            elif kind == "sync":
                for lane in lanes.values():
                    lane.flush(close_seconds)
                reporter.send(("synced", message[1]))
            elif kind == "stop":
                close_seconds = float(message[1])
                break
    finally:
        stopping.set()
        deadline = time.monotonic() + close_seconds
        for lane in lanes.values():
            if lane.prediction_log is not None:
                lane.prediction_log.close(max(0.1, deadline - time.monotonic()))
