"""The prediction log: every answer the API gives, kept for drift checks and realised accuracy.

A row holds the request id, time (UTC), model name and version, the raw input
(reviews: the text; a tabular use case: its raw columns), every feature the use
case's feature module computed for it, P(label 1) and the label. Each use case
has its own tables (`serving.prediction_store.log_schema`). Feedback labels
arrive later through `POST /v1/<use case>/feedback` (reviews also `/feedback`)
and land in a second table; `read_predictions` joins the latest one onto each
prediction. The read API is documented in `serving.prediction_store`.

The request path never waits for the database: `PredictionLog.record` appends
a tuple to an in-memory deque (a few hundred nanoseconds) and a writer thread
drains it in batches, one transaction per batch. A clean shutdown (lifespan
end, which uvicorn runs on SIGTERM) drains the queue before the process exits.
While the store is unreachable rows wait in memory and are retried with
back-off; only beyond `max_queue` rows are new ones dropped, and counted.

Stores, chosen by URL:
- `sqlite:////abs/path.db` (the default, `<DRIFTLOOP_HOME>/predictions.db`):
  WAL journal and a busy timeout, so several uvicorn workers, each with its own
  writer, append to one file.
- `postgresql://user@host:port/db` (psycopg 3): rows are sent with COPY. Add
  `?options=-csearch_path%3D<schema>` to keep the tables in their own schema.
Tables are created when missing.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.prediction_store import (  # noqa: F401  (re-exported: one import for callers)
    FEATURE_COLUMNS,
    FEATURE_DTYPES,
    FEEDBACK_TABLE,
    ID_COLUMNS,
    LOG_COLUMNS,
    PREDICTION_LOG_URL_ENV,
    PREDICTIONS_TABLE,
    READ_COLUMNS,
    READ_DTYPES,
    SHADOW_PAIR_COLUMNS,
    LogRow,
    LogSchema,
    PredictionLogError,
    UnknownRequestError,
    _from_micros,
    _redact,
    _Store,
    default_url,
    log_schema,
    now_micros,
    open_store,
    read_predictions,
    read_shadow_pairs,
    to_micros,
)

log = logging.getLogger(__name__)


# ---- the writer ---------------------------------------------------------------------


@dataclass
class LogStats:
    """Counters the metrics endpoint and the tests read."""

    enqueued: int = 0
    written: int = 0
    rejected: int = 0  # queued, but the store refused the row's data
    dropped: int = 0  # never queued: the queue was full
    failed_writes: int = 0


class PredictionLog:
    """Queue + background writer thread for one process and one table (`schema`, default reviews)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        schema: LogSchema | None = None,
        flush_seconds: float = 0.25,
        batch_rows: int = 1000,
        max_queue: int = 200_000,
        on_written: Callable[[int], None] | None = None,
        on_dropped: Callable[[int], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        self.store = open_store(url, schema)
        self.schema = self.store.schema
        self.url = self.store.url
        self._text_indices = self.schema.text_indices
        self.flush_seconds = flush_seconds
        self.batch_rows = batch_rows
        self.max_queue = max_queue
        self.stats = LogStats()
        self._queue: collections.deque[LogRow] = collections.deque()
        self._wake = threading.Event()
        self._progress = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._on_written = on_written
        self._on_dropped = on_dropped
        self._on_depth = on_depth

    # ---- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Create the tables if needed and start the writer thread (blocking; once)."""
        self.store.ensure_schema()
        self._thread = threading.Thread(
            target=self._run, name="driftloop-prediction-log", daemon=True
        )
        self._thread.start()

    def close(self, timeout: float = 30.0) -> bool:
        """Write everything queued, stop the writer; False if rows were left unwritten."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error(
                    "prediction log writer did not finish within %.0f s; %d rows unwritten",
                    timeout,
                    len(self._queue),
                )
                return False
        left = len(self._queue)
        if left:
            log.error("prediction log closed with %d rows unwritten (store %s)", left, self.url)
        return left == 0

    # ---- hot path ------------------------------------------------------------------

    def record(self, row: LogRow) -> None:
        """Queue one prediction; never blocks."""
        if len(self._queue) >= self.max_queue:
            self.stats.dropped += 1
            if self._on_dropped is not None:
                self._on_dropped(1)
            return
        self._queue.append(row)
        self.stats.enqueued += 1
        if len(self._queue) >= self.batch_rows:
            self._wake.set()

    @property
    def depth(self) -> int:
        """Rows waiting to be written."""
        return len(self._queue)

    # ---- waiting for the writer ------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row queued so far is written (or dropped); False on timeout."""
        target = self.stats.enqueued
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._progress:
            while self.stats.written + self.stats.rejected < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._progress.wait(min(remaining, 0.05))
                self._wake.set()
        return True

    # ---- feedback ------------------------------------------------------------------

    def add_feedback(self, request_id: str, label: int, *, wait_seconds: float = 0.0) -> int:
        """Store a label for a logged prediction; returns the time stored (µs since epoch).

        A prediction this process made moments ago may still be queued, so the
        queue is flushed first. One made by another worker may sit in that
        worker's queue: `wait_seconds` gives it one more look after that long.
        Raises UnknownRequestError when the id stays unknown.
        """
        self.flush()
        found = self.store.has_request(request_id)
        if not found and wait_seconds > 0:
            time.sleep(wait_seconds)
            found = self.store.has_request(request_id)
        if not found:
            raise UnknownRequestError(
                f"no prediction with request id {request_id!r} in the prediction log"
            )
        ts_us = now_micros()
        self.store.add_feedback(request_id, label, ts_us)
        return ts_us

    # ---- the writer thread -----------------------------------------------------------

    def _take(self) -> list[LogRow]:
        batch: list[LogRow] = []
        queue = self._queue
        while queue and len(batch) < self.batch_rows:
            batch.append(queue.popleft())
        return batch

    def _put_back(self, batch: list[LogRow]) -> None:
        self._queue.extendleft(reversed(batch))

    def _run(self) -> None:
        connection: Any = None
        backoff = 0.5
        failures_while_stopping = 0
        while True:
            if not self._queue:
                if self._stopping:
                    break
                self._wake.wait(self.flush_seconds)
                self._wake.clear()
            batch = [_storable(row, self._text_indices) for row in self._take()]
            if self._on_depth is not None:
                self._on_depth(len(self._queue))
            if not batch:
                continue
            try:
                if connection is None:
                    connection = self.store.connect()
                self.store.append(connection, batch)
            except Exception as error:  # driver errors differ per store; sorted out below
                if connection is not None:
                    _close_quietly(connection)
                    connection = None
                if not self.store.is_transient(error):
                    self._write_row_by_row(batch, error)
                    continue
                self._put_back(batch)
                self.stats.failed_writes += 1
                failures_while_stopping += int(self._stopping)
                if failures_while_stopping >= 3:
                    log.error(
                        "prediction log: giving up at shutdown after repeated failures (%s); "
                        "%d rows unwritten",
                        error,
                        len(self._queue),
                    )
                    break
                log.error(
                    "prediction log: writing %d rows to %s failed (%s); retrying in %.1f s",
                    len(batch),
                    _redact(self.url),
                    error,
                    backoff,
                )
                self._wake.wait(backoff)
                self._wake.clear()
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 0.5
            self._done(written=len(batch))
        if connection is not None:
            _close_quietly(connection)
        if self._on_depth is not None:
            self._on_depth(len(self._queue))

    def _done(self, written: int = 0, rejected: int = 0) -> None:
        with self._progress:
            self.stats.written += written
            self.stats.rejected += rejected
            self._progress.notify_all()
        if written and self._on_written is not None:
            self._on_written(written)
        if rejected and self._on_dropped is not None:
            self._on_dropped(rejected)

    def _write_row_by_row(self, batch: list[LogRow], error: Exception) -> None:
        """The store refused the batch's data: keep every row it accepts, log the others."""
        log.warning(
            "prediction log: the store refused a batch of %d rows (%s); writing them one by one",
            len(batch),
            error,
        )
        connection: Any = None
        try:
            for index, row in enumerate(batch):
                try:
                    if connection is None:
                        connection = self.store.connect()
                    self.store.append(connection, [row])
                except Exception as row_error:  # either this row's data or the store itself
                    if self.store.is_transient(row_error):
                        log.error("prediction log: store failed mid-batch: %s", row_error)
                        self._put_back(batch[index:])
                        return
                    log.error(
                        "prediction log: dropped request %s, refused by the store: %s",
                        row[0],
                        row_error,
                    )
                    self._done(rejected=1)
                    _close_quietly(connection)
                    connection = None
                else:
                    self._done(written=1)
        finally:
            if connection is not None:
                _close_quietly(connection)


def _storable(row: LogRow, text_fields: Sequence[int]) -> LogRow:
    """The row with lone surrogates (valid in a Python str, not in UTF-8) replaced by U+FFFD."""
    bad = [
        i
        for i in text_fields
        if isinstance(row[i], str) and not row[i].isascii() and not _encodes(row[i])
    ]
    if not bad:
        return row
    fixed = list(row)
    for i in bad:
        fixed[i] = row[i].encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return tuple(fixed)


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _close_quietly(connection: Any) -> None:
    try:
        connection.close()
    except Exception as error:  # closing a broken connection may raise anything
        log.debug("closing the prediction log connection failed: %s", error)


def rows_for(
    request_ids: Sequence[str],
    ts_us: int,
    model_name: str,
    model_version: str,
    texts: Sequence[str],
    feature_rows: Sequence[tuple[Any, ...]],
    scores: np.ndarray,
    labels: Sequence[int],
) -> list[LogRow]:
    """LOG_COLUMNS tuples for a scored batch (feature_rows in FEATURE_COLUMNS order)."""
    return [
        (rid, ts_us, model_name, model_version, text, *features, float(score), int(label))
        for rid, text, features, score, label in zip(
            request_ids, texts, feature_rows, scores, labels, strict=True
        )
    ]
