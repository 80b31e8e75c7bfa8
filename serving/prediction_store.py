"""Where the prediction log lives: columns, SQL, the SQLite and Postgres stores, reads.

Split from the writer (`serving.prediction_log`) so readers (the drift check, the demo, the
benchmarks) and the writer share one definition of the tables without one importing the
other's thread machinery. Stores are chosen by URL (see `open_store`).

Tables, one pair per use case (`LogSchema`, `log_schema(use_case)`):
- `predictions` / `feedback` for the default use case (reviews), `predictions_<use case>` /
  `feedback_<use case>` for every other one. A predictions row is request_id, ts, model_name,
  model_version, the use case's raw columns (reviews: `text`), its feature columns with their
  contract dtypes, score (P(label 1)) and prediction (the label answered). Feedback rows are
  (request_id, label, ts); the latest label per request id counts.
- `shadow_<predictions table>`: the score the `challenger` version gave a sampled share of
  the same requests (request_id, ts, model_name, model_version, score, prediction), written
  in the background when shadow scoring is on (`serving.shadow`).

Read API (all take a store URL, None = the default store, and timezone-aware bounds):
- `read_predictions(url, start, end, model_name=None, use_case="reviews")`: one row per
  prediction with start <= ts < end, with its latest feedback label (`feedback_label`, <NA>
  when none) and when that label arrived (`feedback_ts`, NaT when none). Grouping by
  `ts.dt.date` gives per *prediction day* figures; a label that lands days later updates
  the day of its prediction, since the window selects on the prediction's time.
- `read_shadow_pairs(url, start, end, use_case="reviews")`: champion and challenger scores
  side by side for every shadow-scored request, with the feedback label (see
  `serving.live_compare` for the per-model figures on labelled rows).
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import time
import typing
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from core.settings import get_settings
from core.usecases import DEFAULT_USE_CASE, get_use_case

log = logging.getLogger(__name__)

PREDICTION_LOG_URL_ENV = "DRIFTLOOP_PREDICTION_LOG_URL"
PREDICTIONS_TABLE = "predictions"
FEEDBACK_TABLE = "feedback"
SHADOW_PREFIX = "shadow_"
KEY_COLUMNS: tuple[str, ...] = ("request_id", "ts", "model_name", "model_version")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,40}")


class PredictionLogError(RuntimeError):
    """The prediction log cannot be opened, written or read; the message says which and why."""


class UnknownRequestError(LookupError):
    """Feedback names a request id the prediction log has never seen."""


@dataclass(frozen=True)
class LogSchema:
    """The columns and tables of one use case's prediction log (see the module docstring)."""

    use_case: str
    predictions_table: str
    feedback_table: str | None
    raw_columns: tuple[str, ...]
    raw_dtypes: dict[str, str]
    feature_columns: tuple[str, ...]
    feature_dtypes: dict[str, str]

    @property
    def log_columns(self) -> tuple[str, ...]:
        """A written row's columns, in order (`LogRow`)."""
        return (*KEY_COLUMNS, *self.raw_columns, *self.feature_columns, "score", "prediction")

    @property
    def read_columns(self) -> tuple[str, ...]:
        extra = ("feedback_label", "feedback_ts") if self.feedback_table else ()
        return (*self.log_columns, *extra)

    @property
    def read_dtypes(self) -> dict[str, str]:
        dtypes = {
            "request_id": "object",
            "ts": "datetime64[ns, UTC]",
            "model_name": "object",
            "model_version": "object",
            **self.raw_dtypes,
            **self.feature_dtypes,
            "score": "float64",
            "prediction": "int64",
        }
        if self.feedback_table:
            dtypes["feedback_label"] = "Int64"
            dtypes["feedback_ts"] = "datetime64[ns, UTC]"
        return dtypes

    @property
    def text_indices(self) -> tuple[int, ...]:
        """Positions of string columns in a LogRow (checked for lone surrogates before writing)."""
        dtypes = self.read_dtypes
        return tuple(i for i, name in enumerate(self.log_columns) if dtypes[name] == "object")

    def shadow(self) -> LogSchema:
        """The table of challenger scores for this use case's requests."""
        return LogSchema(
            use_case=self.use_case,
            predictions_table=SHADOW_PREFIX + self.predictions_table,
            feedback_table=None,
            raw_columns=(),
            raw_dtypes={},
            feature_columns=(),
            feature_dtypes={},
        )


def _raw_dtype(request_model: Any, column: str) -> str:
    """int64 / float64 for the request model's int and float fields, else object (text)."""
    field = getattr(request_model, "model_fields", {}).get(column)
    annotation = getattr(field, "annotation", None)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(args) == 1 and len(typing.get_args(annotation)) == 2:  # Optional[X]: NULL -> NaN
        return "float64" if args[0] in (int, float) else "object"
    if annotation is bool or annotation is int:
        return "int64"
    if annotation is float:
        return "float64"
    return "object"


@lru_cache(maxsize=64)
def log_schema(use_case: str = DEFAULT_USE_CASE) -> LogSchema:
    """The prediction-log schema of a registered use case."""
    if not _NAME.fullmatch(use_case):
        raise PredictionLogError(
            f"use case name {use_case!r} cannot name a table: use [a-z][a-z0-9_]* (at most 41)"
        )
    uc = get_use_case(use_case)
    raw = tuple(uc.contract.RAW_COLUMNS)
    features = tuple(uc.features.FEATURE_COLUMNS)
    clash = set(raw) & set(features) | (set(raw) | set(features)) & {
        *KEY_COLUMNS,
        "score",
        "prediction",
    }
    if clash:
        raise PredictionLogError(
            f"use case {use_case!r}: columns {sorted(clash)} appear twice in its prediction log"
        )
    suffix = "" if use_case == DEFAULT_USE_CASE else f"_{use_case}"
    request_model = getattr(uc.contract, "PredictRequest", None)
    return LogSchema(
        use_case=use_case,
        predictions_table=PREDICTIONS_TABLE + suffix,
        feedback_table=FEEDBACK_TABLE + suffix,
        raw_columns=raw,
        raw_dtypes={c: _raw_dtype(request_model, c) for c in raw},
        feature_columns=features,
        feature_dtypes=dict(uc.features.FEATURE_DTYPES),
    )


# The default use case's log, under the names this module has always exported.
_DEFAULT_SCHEMA = log_schema(DEFAULT_USE_CASE)
FEATURE_COLUMNS: tuple[str, ...] = _DEFAULT_SCHEMA.feature_columns
FEATURE_DTYPES: dict[str, str] = _DEFAULT_SCHEMA.feature_dtypes
ID_COLUMNS: tuple[str, ...] = (*KEY_COLUMNS, *_DEFAULT_SCHEMA.raw_columns)
LOG_COLUMNS: tuple[str, ...] = _DEFAULT_SCHEMA.log_columns
READ_COLUMNS: tuple[str, ...] = _DEFAULT_SCHEMA.read_columns
READ_DTYPES: dict[str, str] = _DEFAULT_SCHEMA.read_dtypes

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)

LogRow = tuple[Any, ...]
"""One prediction in its schema's `log_columns` order; `ts` as integer µs since the epoch (UTC)."""


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


def _ddl(schema: LogSchema, *, postgres: bool) -> list[str]:
    """CREATE statements for the schema's tables and indexes (idempotent)."""
    dtypes = schema.read_dtypes
    ts_type = "TIMESTAMPTZ" if postgres else "INTEGER"
    columns = [
        "request_id TEXT NOT NULL",
        f"ts {ts_type} NOT NULL",
        "model_name TEXT NOT NULL",
        "model_version TEXT NOT NULL",
        # Raw columns may be optional in a request model; features never are.
        *(f"{name} {_sql_type(dtypes[name], postgres=postgres)}" for name in schema.raw_columns),
        *(
            f"{name} {_sql_type(dtypes[name], postgres=postgres)} NOT NULL"
            for name in schema.feature_columns
        ),
        f"score {_sql_type('float64', postgres=postgres)} NOT NULL",
        f"prediction {_sql_type('int64', postgres=postgres)} NOT NULL",
    ]
    table = schema.predictions_table
    body = ",\n    ".join(columns)
    statements = [
        f"CREATE TABLE IF NOT EXISTS {table} (\n    {body}\n)",
        f"CREATE INDEX IF NOT EXISTS {table}_ts ON {table} (ts)",
        f"CREATE INDEX IF NOT EXISTS {table}_request_id ON {table} (request_id)",
    ]
    feedback = schema.feedback_table
    if feedback:
        key = "id BIGSERIAL PRIMARY KEY" if postgres else "id INTEGER PRIMARY KEY AUTOINCREMENT"
        label = _sql_type("int64", postgres=postgres)
        statements += [
            f"CREATE TABLE IF NOT EXISTS {feedback} (\n    {key},\n    request_id TEXT NOT NULL,"
            f"\n    label {label} NOT NULL,\n    ts {ts_type} NOT NULL\n)",
            f"CREATE INDEX IF NOT EXISTS {feedback}_request_id ON {feedback} (request_id)",
        ]
    return statements


def _select_sql(schema: LogSchema, placeholder: str, with_model: bool) -> str:
    """Predictions in [start, end) with the latest feedback label (and its time) per request id."""
    columns = ", ".join(f"p.{name}" for name in schema.log_columns)
    model_filter = f" AND p.model_name = {placeholder}" if with_model else ""
    table, feedback = schema.predictions_table, schema.feedback_table
    if not feedback:
        return f"""
SELECT {columns} FROM {table} p
WHERE p.ts >= {placeholder} AND p.ts < {placeholder}{model_filter}
ORDER BY p.ts, p.request_id
"""
    return f"""
SELECT {columns}, f.label AS feedback_label, f.ts AS feedback_ts
FROM {table} p
LEFT JOIN (
    SELECT request_id, label, ts FROM (
        SELECT request_id, label, ts,
               ROW_NUMBER() OVER (PARTITION BY request_id ORDER BY ts DESC, id DESC) AS rn
        FROM {feedback}
        WHERE request_id IN (
            SELECT request_id FROM {table} WHERE ts >= {placeholder} AND ts < {placeholder}
        )
    ) ranked WHERE rn = 1
) f ON f.request_id = p.request_id
WHERE p.ts >= {placeholder} AND p.ts < {placeholder}{model_filter}
ORDER BY p.ts, p.request_id
"""


def _params(schema: LogSchema, start: Any, end: Any, model_name: str | None) -> list[Any]:
    params: list[Any] = [start, end, start, end] if schema.feedback_table else [start, end]
    if model_name is not None:
        params.append(model_name)
    return params


class _Store(ABC):
    """One database flavour and one use case's tables: schema, appends, feedback, reads."""

    url: str
    schema: LogSchema

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
        """Rows in the schema's read_columns order, and whether `ts` comes back as datetimes."""

    def _feedback_table(self) -> str:
        if not self.schema.feedback_table:
            raise PredictionLogError(f"{self.schema.predictions_table} takes no feedback")
        return self.schema.feedback_table


class _SqliteStore(_Store):
    def __init__(self, url: str, path: Path, schema: LogSchema) -> None:
        self.url = url
        self.path = path
        self.schema = schema

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
            for statement in _ddl(self.schema, postgres=False):
                connection.execute(statement)

    def is_transient(self, error: Exception) -> bool:
        return isinstance(error, sqlite3.OperationalError | PredictionLogError | OSError)

    def append(self, connection: sqlite3.Connection, rows: Sequence[LogRow]) -> None:
        columns = self.schema.log_columns
        marks = ", ".join("?" for _ in columns)
        with connection:
            connection.executemany(
                f"INSERT INTO {self.schema.predictions_table} ({', '.join(columns)}) "
                f"VALUES ({marks})",
                rows,
            )

    def add_feedback(self, request_id: str, label: int, ts_us: int) -> None:
        table = self._feedback_table()
        with self._session() as connection:
            connection.execute(
                f"INSERT INTO {table} (request_id, label, ts) VALUES (?, ?, ?)",
                (request_id, label, ts_us),
            )

    def has_request(self, request_id: str) -> bool:
        with self._session() as connection:
            found = connection.execute(
                f"SELECT 1 FROM {self.schema.predictions_table} WHERE request_id = ? LIMIT 1",
                (request_id,),
            ).fetchone()
        return found is not None

    def fetch(
        self, start_us: int, end_us: int, model_name: str | None
    ) -> tuple[list[tuple[Any, ...]], bool]:
        params = _params(self.schema, start_us, end_us, model_name)
        with self._session() as connection:
            rows = connection.execute(
                _select_sql(self.schema, "?", model_name is not None), params
            ).fetchall()
        return rows, False


class _PostgresStore(_Store):
    def __init__(self, url: str, schema: LogSchema) -> None:
        self.url = url
        self.schema = schema

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
        import psycopg

        try:
            with self._session() as connection:
                # Several workers may start at once; the lock serialises their DDL.
                connection.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('driftloop-prediction-log'))"
                )
                for statement in _ddl(self.schema, postgres=True):
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
        columns = self.schema.log_columns
        ts_index = columns.index("ts")
        with connection.transaction(), connection.cursor() as cursor:
            copy_sql = f"COPY {self.schema.predictions_table} ({', '.join(columns)}) FROM STDIN"
            with cursor.copy(copy_sql) as copy:
                for row in rows:
                    values = list(row)
                    values[ts_index] = _from_micros(values[ts_index])
                    copy.write_row(values)

    def add_feedback(self, request_id: str, label: int, ts_us: int) -> None:
        table = self._feedback_table()
        with self._session() as connection:
            connection.execute(
                f"INSERT INTO {table} (request_id, label, ts) VALUES (%s, %s, %s)",
                (request_id, label, _from_micros(ts_us)),
            )

    def has_request(self, request_id: str) -> bool:
        with self._session() as connection:
            found = connection.execute(
                f"SELECT 1 FROM {self.schema.predictions_table} WHERE request_id = %s LIMIT 1",
                (request_id,),
            ).fetchone()
        return found is not None

    def fetch(
        self, start_us: int, end_us: int, model_name: str | None
    ) -> tuple[list[tuple[Any, ...]], bool]:
        params = _params(self.schema, _from_micros(start_us), _from_micros(end_us), model_name)
        with self._session() as connection:
            rows = connection.execute(
                _select_sql(self.schema, "%s", model_name is not None), params
            ).fetchall()
        return rows, True


def _redact(url: str) -> str:
    """The URL without a password, for messages."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}" if ":" in credentials else url


def open_store(url: str | None, schema: LogSchema | None = None) -> _Store:
    """The store a URL names (None -> default_url()), for one use case's tables (default: reviews)."""
    url = url or default_url()
    schema = schema or _DEFAULT_SCHEMA
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path or path == ":memory:":
            raise PredictionLogError(
                f"prediction log URL {url!r} names no file; use sqlite:////abs/path.db"
            )
        return _SqliteStore(url, Path(path), schema)
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return _PostgresStore(url.replace("postgresql+psycopg://", "postgresql://", 1), schema)
    raise PredictionLogError(
        f"unsupported prediction log URL {_redact(url)!r}: expected sqlite:////abs/path.db or "
        f"postgresql://user@host:port/db (set {PREDICTION_LOG_URL_ENV})"
    )


def _empty_frame(schema: LogSchema) -> pd.DataFrame:
    dtypes = schema.read_dtypes
    return pd.DataFrame({name: pd.Series(dtype=dtypes[name]) for name in schema.read_columns})


def _utc(values: pd.Series, as_datetime: bool) -> pd.Series:
    if as_datetime:
        return pd.to_datetime(values, utc=True).astype("datetime64[ns, UTC]")
    return pd.to_datetime(values.astype("Int64"), unit="us", utc=True).astype("datetime64[ns, UTC]")


def read_table(
    url: str | None,
    start: datetime,
    end: datetime,
    schema: LogSchema,
    model_name: str | None = None,
) -> pd.DataFrame:
    """Rows of one schema's table with start <= ts < end (see `read_predictions`)."""
    start_us, end_us = to_micros(start), to_micros(end)
    store = open_store(url, schema)
    if isinstance(store, _SqliteStore) and not store.path.exists():
        return _empty_frame(schema)
    store.ensure_schema()
    rows, ts_is_datetime = store.fetch(start_us, end_us, model_name)
    if not rows:
        return _empty_frame(schema)
    frame = pd.DataFrame.from_records(rows, columns=list(schema.read_columns))
    frame["ts"] = _utc(frame["ts"], ts_is_datetime)
    frame["model_version"] = frame["model_version"].astype(str)
    if schema.feedback_table:
        frame["feedback_label"] = frame["feedback_label"].astype("Int64")
        frame["feedback_ts"] = _utc(frame["feedback_ts"], ts_is_datetime)
    for name, dtype in schema.read_dtypes.items():
        if name not in ("ts", "feedback_label", "feedback_ts") and dtype != "object":
            frame[name] = frame[name].astype(dtype)  # type: ignore[call-overload]  # dtype names are str
    return frame


def read_predictions(
    url: str | None,
    start: datetime,
    end: datetime,
    model_name: str | None = None,
    use_case: str = DEFAULT_USE_CASE,
) -> pd.DataFrame:
    """One use case's predictions with start <= ts < end, with their latest feedback label.

    `url` None reads the default store (DRIFTLOOP_PREDICTION_LOG_URL, else SQLite under
    DRIFTLOOP_HOME). `start`/`end` must be timezone-aware and select on the *prediction's*
    time, so a late label shows up under the day its prediction was made. Columns:
    request_id, ts (UTC), model_name, model_version, the use case's raw columns (reviews:
    text), every feature column with its contract dtype, score (float64), prediction (int64),
    feedback_label (Int64, <NA> without feedback) and feedback_ts (UTC, when that label
    arrived; NaT without). A store that does not exist yet, or an empty window, gives an empty
    frame with the same columns and dtypes.
    """
    return read_table(url, start, end, log_schema(use_case), model_name)


SHADOW_PAIR_COLUMNS: tuple[str, ...] = (
    "request_id",
    "ts",
    "model_name",
    "champion_version",
    "champion_score",
    "champion_prediction",
    "challenger_version",
    "challenger_score",
    "challenger_prediction",
    "feedback_label",
    "feedback_ts",
)


def read_shadow_pairs(
    url: str | None, start: datetime, end: datetime, use_case: str = DEFAULT_USE_CASE
) -> pd.DataFrame:
    """Champion and challenger scores of every shadow-scored request in [start, end).

    One row per request the challenger scored (columns SHADOW_PAIR_COLUMNS): the answered
    (champion) version, score and prediction, the challenger's, and the request's latest
    feedback label (<NA> without). Bounds select on the champion's prediction time.
    """
    schema = log_schema(use_case)
    answered = read_predictions(url, start, end, use_case=use_case)
    # The challenger scores moments after the champion; a little slack keeps edge rows paired.
    shadow = read_table(url, start, end + timedelta(minutes=5), schema.shadow())
    pairs = answered[
        [
            "request_id",
            "ts",
            "model_name",
            "model_version",
            "score",
            "prediction",
            "feedback_label",
            "feedback_ts",
        ]
    ].merge(
        shadow[["request_id", "model_version", "score", "prediction"]].drop_duplicates(
            "request_id", keep="last"
        ),
        on="request_id",
        suffixes=("_champion", "_challenger"),
    )
    pairs = pairs.rename(
        columns={
            "model_version_champion": "champion_version",
            "score_champion": "champion_score",
            "prediction_champion": "champion_prediction",
            "model_version_challenger": "challenger_version",
            "score_challenger": "challenger_score",
            "prediction_challenger": "challenger_prediction",
        }
    )
    return pairs[list(SHADOW_PAIR_COLUMNS)].reset_index(drop=True)
