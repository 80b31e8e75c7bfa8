"""Inside the shadow process: each use case's challenger, its scoring and its shadow table.

Imported by `serving.shadow_child.main` once the process runs at its low priority. Per use
case with shadow scoring on, a `_Lane` holds:
- a `ModelHolder` following `<model>@<shadow alias>` (polled by a loader thread at the reload
  interval, swapped when the alias moves, cleared - scoring paused - when it is removed);
- a `PredictionLog` writing the use case's shadow table, exactly the rows the champion's
  request ids are paired with (`serving.prediction_store.read_shadow_pairs`): request id, time,
  model name, challenger version, P(label 1) and the label at the challenger's own threshold.
`serve` is the loop that scores what the parent sends (protocol in `serving.shadow_child`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from serving.model import ModelHolder, ModelLoadError, ModelNotFoundError
from serving.prediction_log import PredictionLog, log_schema
from serving.shadow_child import ShadowChildConfig
from serving.usecase import served_use_case

log = logging.getLogger(__name__)

Row = tuple[str, Any, str]  # request id, raw item (plain data), champion version


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


def serve(config: ShadowChildConfig, work: Connection, status: Connection, niceness: int) -> None:
    """The child's main loop: score what the parent sends until told to stop (or orphaned)."""
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
