"""The prediction log: every answer the API gives, kept for drift checks and realised accuracy.

A row holds the request id, time (UTC), model name and version, the raw text,
every feature `features.reviews` computed for it, P(positive) and the label.
Feedback labels arrive later through `POST /feedback` and land in a second
table; `read_predictions` joins the latest one onto each prediction.

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
import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.settings import get_settings
from core.usecases import DEFAULT_USE_CASE, get_use_case

# The log's columns are the default use case's features (see the module docstring).
FEATURE_COLUMNS: tuple[str, ...] = tuple(get_use_case(DEFAULT_USE_CASE).features.FEATURE_COLUMNS)
FEATURE_DTYPES: dict[str, str] = dict(get_use_case(DEFAULT_USE_CASE).features.FEATURE_DTYPES)

log = logging.getLogger(__name__)

PREDICTION_LOG_URL_ENV = "DRIFTLOOP_PREDICTION_LOG_URL"
PREDICTIONS_TABLE = "predictions"
FEEDBACK_TABLE = "feedback"

ID_COLUMNS: tuple[str, ...] = ("request_id", "ts", "model_name", "model_version", "text")
LOG_COLUMNS: tuple[str, ...] = (*ID_COLUMNS, *FEATURE_COLUMNS, "score", "prediction")
READ_COLUMNS: tuple[str, ...] = (*LOG_COLUMNS, "feedback_label")
READ_DTYPES: dict[str, str] = {
    "request_id": "object",
    "ts": "datetime64[ns, UTC]",
    "model_name": "object",
    "model_version": "object",
    "text": "object",
    **FEATURE_DTYPES,
    "score": "float64",
    "prediction": "int64",
    "feedback_label": "Int64",
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)

LogRow = tuple[Any, ...]
"""One prediction in LOG_COLUMNS order; `ts` as integer microseconds since the epoch (UTC)."""


class PredictionLogError(RuntimeError):
    """The prediction log cannot be opened, written or read; the message says which and why."""


class UnknownRequestError(LookupError):
    """Feedback names a request id the prediction log has never seen."""


def default_url() -> str:
    """DRIFTLOOP_PREDICTION_LOG_URL, else SQLite at <DRIFTLOOP_HOME>/predictions.db."""
    return os.environ.get(PREDICTION_LOG_URL_ENV) or (
        f"sqlite:///{get_settings().home / 'predictions.db'}"
    )


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch for a timezone-aware datetime (exact, no float rounding)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"{moment!r} has no timezone; pass an aware datetime such as "
            "datetime(2026, 1, 1, tzinfo=UTC)"
        )
    return (moment - _EPOCH) // _ONE_US


def now_micros() -> int:
    return time.time_ns() // 1000


def _from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(value))


def _sql_type(dtype: str, *, postgres: bool) -> str:
    if dtype == "int64":
        return "BIGINT" if postgres else "INTEGER"
    if dtype == "float64":
        return "DOUBLE PRECISION" if postgres else "REAL"
    return "TEXT"


def _feature_ddl(postgres: bool) -> str:
    return ",\n".join(
        f"    {name} {_sql_type(FEATURE_DTYPES[name], postgres=postgres)} NOT NULL"
        for name in FEATURE_COLUMNS
    )


def _select_sql(placeholder: str, with_model: bool) -> str:
    """Predictions in [start, end) with the latest feedback label per request id."""
    columns = ", ".join(f"p.{name}" for name in LOG_COLUMNS)
    model_filter = f" AND p.model_name = {placeholder}" if with_model else ""
    return f"""
SELECT {columns}, f.label AS feedback_label
FROM {PREDICTIONS_TABLE} p
LEFT JOIN (
    SELECT request_id, label FROM (
        SELECT request_id, label,
               ROW_NUMBER() OVER (PARTITION BY request_id ORDER BY ts DESC, id DESC) AS rn
        FROM {FEEDBACK_TABLE}
        WHERE request_id IN (
            SELECT request_id FROM {PREDICTIONS_TABLE} WHERE ts >= {placeholder} AND ts < {placeholder}
        )
    ) ranked WHERE rn = 1
) f ON f.request_id = p.request_id
WHERE p.ts >= {placeholder} AND p.ts < {placeholder}{model_filter}
ORDER BY p.ts, p.request_id
"""


class _Store(ABC):
    """One database flavour: schema, appends, feedback, reads."""

    url: str

    @abstractmethod
    def connect(self) -> Any: ...

    @abstractmethod
    def ensure_schema(self) -> None: ...

    @abstractmethod
    def append(self, connection: Any, rows: Sequence[LogRow]) -> None: ...

    @abstractmethod
    def add_feedback(self, request_id: str, label: int, ts_us: int) -> None: ...

    @abstractmethod
    def has_request(self, request_id: str) -> bool: ...

    @abstractmethod
    def is_transient(self, error: Exception) -> bool:
        """True when retrying later may succeed (store down or busy), False for bad data."""

    @abstractmethod
    def fetch(
        self, start_us: int, end_us: int, model_name: str | None
    ) -> tuple[list[tuple[Any, ...]], bool]:
        """Rows in READ_COLUMNS order, and whether `ts` comes back as datetimes."""


class _SqliteStore(_Store):
    def __init__(self, url: str, path: Path) -> None:
        self.url = url
        self.path = path

    def connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
        except (OSError, sqlite3.Error) as error:
            raise PredictionLogError(
                f"cannot open the prediction log {self.path} ({error}); check that the folder "
                f"is writable or set {PREDICTION_LOG_URL_ENV}"
            ) from error
        connection.execute("PRAGMA busy_timeout = 30000")
        connection.execute("PRAGMA synchronous = FULL")
        return connection

    @contextmanager
    def _session(self) -> Iterator[sqlite3.Connection]:
        connection = self.connect()
        try:
            with connection:
                yield connection
        finally:
            connection.close()

    def ensure_schema(self) -> None:
        with self._session() as connection:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.executescript(
                f"""
CREATE TABLE IF NOT EXISTS {PREDICTIONS_TABLE} (
    request_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    text TEXT NOT NULL,
{_feature_ddl(postgres=False)},
    score REAL NOT NULL,
    prediction INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS {PREDICTIONS_TABLE}_ts ON {PREDICTIONS_TABLE} (ts);
CREATE INDEX IF NOT EXISTS {PREDICTIONS_TABLE}_request_id ON {PREDICTIONS_TABLE} (request_id);
CREATE TABLE IF NOT EXISTS {FEEDBACK_TABLE} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    label INTEGER NOT NULL,
    ts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS {FEEDBACK_TABLE}_request_id ON {FEEDBACK_TABLE} (request_id);
"""
            )

    def is_transient(self, error: Exception) -> bool:
        return isinstance(error, sqlite3.OperationalError | PredictionLogError | OSError)

    def append(self, connection: sqlite3.Connection, rows: Sequence[LogRow]) -> None:
        marks = ", ".join("?" for _ in LOG_COLUMNS)
        with connection:
            connection.executemany(
                f"INSERT INTO {PREDICTIONS_TABLE} ({', '.join(LOG_COLUMNS)}) VALUES ({marks})", rows
            )

    def add_feedback(self, request_id: str, label: int, ts_us: int) -> None:
        with self._session() as connection:
            connection.execute(
                f"INSERT INTO {FEEDBACK_TABLE} (request_id, label, ts) VALUES (?, ?, ?)",
                (request_id, label, ts_us),
            )

    def has_request(self, request_id: str) -> bool:
        with self._session() as connection:
            found = connection.execute(
                f"SELECT 1 FROM {PREDICTIONS_TABLE} WHERE request_id = ? LIMIT 1", (request_id,)
            ).fetchone()
        return found is not None

    def fetch(
        self, start_us: int, end_us: int, model_name: str | None
    ) -> tuple[list[tuple[Any, ...]], bool]:
        params: list[Any] = [start_us, end_us, start_us, end_us]
        if model_name is not None:
            params.append(model_name)
        with self._session() as connection:
            rows = connection.execute(_select_sql("?", model_name is not None), params).fetchall()
        return rows, False


class _PostgresStore(_Store):
    def __init__(self, url: str) -> None:
        self.url = url

    def connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.url, connect_timeout=10)
        except psycopg.Error as error:
            raise PredictionLogError(
                f"cannot connect to the prediction log at {_redact(self.url)}: "
                f"{str(error).strip().splitlines()[0] if str(error).strip() else error!r}"
            ) from error

    @contextmanager
    def _session(self) -> Iterator[Any]:
        connection = self.connect()
        try:
            with connection:
                yield connection
        finally:
            connection.close()

    def ensure_schema(self) -> None:
        statements = [
            f"""CREATE TABLE IF NOT EXISTS {PREDICTIONS_TABLE} (
    request_id TEXT NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    text TEXT NOT NULL,
{_feature_ddl(postgres=True)},
    score DOUBLE PRECISION NOT NULL,
    prediction BIGINT NOT NULL
)""",
            f"CREATE INDEX IF NOT EXISTS {PREDICTIONS_TABLE}_ts ON {PREDICTIONS_TABLE} (ts)",
            f"CREATE INDEX IF NOT EXISTS {PREDICTIONS_TABLE}_request_id "
            f"ON {PREDICTIONS_TABLE} (request_id)",
            f"""CREATE TABLE IF NOT EXISTS {FEEDBACK_TABLE} (
    id BIGSERIAL PRIMARY KEY,
    request_id TEXT NOT NULL,
    label BIGINT NOT NULL,
    ts TIMESTAMPTZ NOT NULL
)""",
            f"CREATE INDEX IF NOT EXISTS {FEEDBACK_TABLE}_request_id "
            f"ON {FEEDBACK_TABLE} (request_id)",
        ]
        import psycopg

        try:
            with self._session() as connection:
                # Several workers may start at once; the lock serialises their DDL.
                connection.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('driftloop-prediction-log'))"
                )
                for statement in statements:
                    connection.execute(statement)
        except psycopg.Error as error:
            raise PredictionLogError(
                f"cannot create the prediction log tables at {_redact(self.url)}: {error}"
            ) from error

    def is_transient(self, error: Exception) -> bool:
        import psycopg

        return isinstance(
            error,
            psycopg.OperationalError
            | psycopg.InterfaceError
            | psycopg.errors.UndefinedTable
            | PredictionLogError
            | OSError,
        )

    def append(self, connection: Any, rows: Sequence[LogRow]) -> None:
        ts_index = LOG_COLUMNS.index("ts")
        with connection.transaction(), connection.cursor() as cursor:
            copy_sql = f"COPY {PREDICTIONS_TABLE} ({', '.join(LOG_COLUMNS)}) FROM STDIN"
            with cursor.copy(copy_sql) as copy:
                for row in rows:
                    values = list(row)
                    values[ts_index] = _from_micros(values[ts_index])
                    copy.write_row(values)

    def add_feedback(self, request_id: str, label: int, ts_us: int) -> None:
        with self._session() as connection:
            connection.execute(
                f"INSERT INTO {FEEDBACK_TABLE} (request_id, label, ts) VALUES (%s, %s, %s)",
                (request_id, label, _from_micros(ts_us)),
            )

    def has_request(self, request_id: str) -> bool:
        with self._session() as connection:
            found = connection.execute(
                f"SELECT 1 FROM {PREDICTIONS_TABLE} WHERE request_id = %s LIMIT 1", (request_id,)
            ).fetchone()
        return found is not None

    def fetch(
        self, start_us: int, end_us: int, model_name: str | None
    ) -> tuple[list[tuple[Any, ...]], bool]:
        start, end = _from_micros(start_us), _from_micros(end_us)
        params: list[Any] = [start, end, start, end]
        if model_name is not None:
            params.append(model_name)
        with self._session() as connection:
            rows = connection.execute(_select_sql("%s", model_name is not None), params).fetchall()
        return rows, True


def _redact(url: str) -> str:
    """The URL without a password, for messages."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}" if ":" in credentials else url


def open_store(url: str | None) -> _Store:
    """The store a URL names (None -> default_url())."""
    url = url or default_url()
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path or path == ":memory:":
            raise PredictionLogError(
                f"prediction log URL {url!r} names no file; use sqlite:////abs/path.db"
            )
        return _SqliteStore(url, Path(path))
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return _PostgresStore(url.replace("postgresql+psycopg://", "postgresql://", 1))
    raise PredictionLogError(
        f"unsupported prediction log URL {_redact(url)!r}: expected sqlite:////abs/path.db or "
        f"postgresql://user@host:port/db (set {PREDICTION_LOG_URL_ENV})"
    )


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=READ_DTYPES[name]) for name in READ_COLUMNS})


def read_predictions(
    url: str | None, start: datetime, end: datetime, model_name: str | None = None
) -> pd.DataFrame:
    """Predictions with start <= ts < end, with the latest feedback label per request id.

    `url` None reads the default store (DRIFTLOOP_PREDICTION_LOG_URL, else
    SQLite under DRIFTLOOP_HOME). `start`/`end` must be timezone-aware.
    Columns: request_id, ts (UTC), model_name, model_version, text, every
    feature column with its contract dtype, score (float64), prediction (int64),
    feedback_label (Int64, <NA> without feedback). A store that does not exist
    yet, or an empty window, gives an empty frame with the same columns and dtypes.
    """
    start_us, end_us = to_micros(start), to_micros(end)
    store = open_store(url)
    if isinstance(store, _SqliteStore) and not store.path.exists():
        return _empty_frame()
    store.ensure_schema()
    rows, ts_is_datetime = store.fetch(start_us, end_us, model_name)
    if not rows:
        return _empty_frame()
    frame = pd.DataFrame.from_records(rows, columns=list(READ_COLUMNS))
    if ts_is_datetime:
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype("datetime64[ns, UTC]")
    else:
        frame["ts"] = pd.to_datetime(frame["ts"].astype("int64"), unit="us", utc=True).astype(
            "datetime64[ns, UTC]"
        )
    frame["model_version"] = frame["model_version"].astype(str)
    frame["feedback_label"] = frame["feedback_label"].astype("Int64")
    for name, dtype in READ_DTYPES.items():
        if name not in ("ts", "feedback_label") and dtype != "object":
            frame[name] = frame[name].astype(dtype)  # type: ignore[call-overload]  # dtype names are str
    return frame


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
    """Queue + background writer thread for one process."""

    def __init__(
        self,
        url: str | None = None,
        *,
        flush_seconds: float = 0.25,
        batch_rows: int = 1000,
        max_queue: int = 200_000,
        on_written: Callable[[int], None] | None = None,
        on_dropped: Callable[[int], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        self.store = open_store(url)
        self.url = self.store.url
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
            batch = [_storable(row) for row in self._take()]
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


_TEXT_FIELDS = (0, 2, 3, 4, LOG_COLUMNS.index("text_clean"))


def _storable(row: LogRow) -> LogRow:
    """The row with lone surrogates (valid in a Python str, not in UTF-8) replaced by U+FFFD."""
    bad = [
        i
        for i in _TEXT_FIELDS
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
