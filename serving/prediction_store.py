"""Where the prediction log lives: columns, SQL, the SQLite and Postgres stores, reads.

Split from the writer (`serving.prediction_log`) so readers (the drift check, the demo, the
benchmarks) and the writer share one definition of the tables without one importing the
other's thread machinery. Stores are chosen by URL (see `open_store`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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
