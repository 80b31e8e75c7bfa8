"""The prediction log: rows written off the request path, read back with feedback, on SQLite and Postgres."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from contracts.reviews import RAW_TEXT
from features.reviews import FEATURE_COLUMNS, build_features, featurize_texts
from serving.app import create_app
from serving.prediction_log import (
    READ_COLUMNS,
    READ_DTYPES,
    PredictionLog,
    PredictionLogError,
    UnknownRequestError,
    read_predictions,
    to_micros,
)

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
TEXTS = ["Loved it, <b>brilliant</b>!!", "NOT good. Boring...", "caf\u00e9 \u2014 sooo fine?"]
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def _rows(n: int, start: datetime, model: str = "m", version: str = "3") -> list[tuple[Any, ...]]:
    texts = [TEXTS[i % len(TEXTS)] for i in range(n)]
    columns = featurize_texts(texts)
    features = list(zip(*(columns[c] for c in FEATURE_COLUMNS), strict=True))
    return [
        (
            f"req-{i}",
            to_micros(start + timedelta(seconds=i)),
            model,
            version,
            texts[i],
            *features[i],
            0.1 + i / (2 * n),
            i % 2,
        )
        for i in range(n)
    ]


def _write(url: str, rows: list[tuple[Any, ...]]) -> None:
    log = PredictionLog(url, flush_seconds=0.05)
    log.start()
    for row in rows:
        log.record(row)
    assert log.close(timeout=30)


def _assert_schema(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(READ_COLUMNS)
    assert {c: str(t) for c, t in frame.dtypes.items()} == READ_DTYPES


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'predictions.db'}"


def test_missing_store_and_empty_window_read_as_typed_empty_frames(sqlite_url: str) -> None:
    missing = read_predictions(sqlite_url, T0, T0 + timedelta(days=1))
    _write(sqlite_url, _rows(3, T0))
    empty = read_predictions(sqlite_url, T0 - timedelta(days=2), T0 - timedelta(days=1))
    for frame in (missing, empty):
        assert frame.empty
        _assert_schema(frame)


def test_rows_round_trip_with_contract_dtypes_and_window_bounds(sqlite_url: str) -> None:
    rows = _rows(10, T0)
    _write(sqlite_url, rows)

    frame = read_predictions(sqlite_url, T0 + timedelta(seconds=2), T0 + timedelta(seconds=7))

    _assert_schema(frame)
    assert frame["request_id"].tolist() == [f"req-{i}" for i in range(2, 7)]
    assert frame["ts"].tolist() == [T0 + timedelta(seconds=i) for i in range(2, 7)]
    expected = build_features(pd.DataFrame({RAW_TEXT: [r[4] for r in rows[2:7]]}))
    pd.testing.assert_frame_equal(frame[list(FEATURE_COLUMNS)].reset_index(drop=True), expected)
    assert frame["score"].tolist() == [r[-2] for r in rows[2:7]]
    assert frame["prediction"].tolist() == [r[-1] for r in rows[2:7]]
    assert frame["feedback_label"].isna().all()


def test_model_name_filter(sqlite_url: str) -> None:
    _write(sqlite_url, _rows(4, T0, model="a") + _rows(3, T0, model="b"))
    end = T0 + timedelta(hours=1)
    assert len(read_predictions(sqlite_url, T0, end, model_name="b")) == 3
    assert len(read_predictions(sqlite_url, T0, end)) == 7


def test_latest_feedback_is_joined(sqlite_url: str) -> None:
    _write(sqlite_url, _rows(3, T0))
    log = PredictionLog(sqlite_url)
    log.start()
    try:
        log.add_feedback("req-0", 1)
        log.add_feedback("req-0", 0)
        log.add_feedback("req-2", 1)
        with pytest.raises(UnknownRequestError, match="nope"):
            log.add_feedback("nope", 1)
    finally:
        log.close()

    frame = read_predictions(sqlite_url, T0, T0 + timedelta(hours=1))

    assert frame["feedback_label"].tolist() == [0, pd.NA, 1]


def test_naive_datetimes_and_unknown_urls_are_refused(sqlite_url: str) -> None:
    with pytest.raises(ValueError, match="timezone"):
        read_predictions(sqlite_url, datetime(2026, 1, 1), T0)
    with pytest.raises(PredictionLogError, match="unsupported prediction log URL"):
        read_predictions("mysql://x/y", T0, T0 + timedelta(days=1))


def test_writers_in_parallel_share_one_sqlite_file(sqlite_url: str) -> None:
    """Several workers each have a writer; WAL + busy timeout keep every row."""
    logs = [PredictionLog(sqlite_url, flush_seconds=0.01, batch_rows=7) for _ in range(3)]
    for log in logs:
        log.start()

    def produce(index: int, log: PredictionLog) -> None:
        for row in _rows(200, T0 + timedelta(minutes=index)):
            log.record((f"w{index}-{row[0]}", *row[1:]))

    threads = [threading.Thread(target=produce, args=(i, log)) for i, log in enumerate(logs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(log.close(timeout=60) for log in logs)

    frame = read_predictions(sqlite_url, T0, T0 + timedelta(hours=1))
    assert len(frame) == 600
    assert frame["request_id"].is_unique


def test_rows_wait_in_memory_while_the_store_fails_and_are_written_later(sqlite_url: str) -> None:
    log = PredictionLog(sqlite_url, flush_seconds=0.02)
    log.start()
    path = sqlite_url[len("sqlite:///") :]
    with sqlite3.connect(path) as other:
        other.execute("ALTER TABLE predictions RENAME TO predictions_away")
    try:
        for row in _rows(5, T0):
            log.record(row)
        assert not log.flush(timeout=1.0)
        assert log.stats.failed_writes >= 1
        assert log.stats.written == 0
        assert log.depth == 5
    finally:
        with sqlite3.connect(path) as other:
            other.execute("ALTER TABLE predictions_away RENAME TO predictions")
    assert log.flush(timeout=30)
    assert log.close(timeout=30)
    assert read_predictions(sqlite_url, T0, T0 + timedelta(hours=1))["request_id"].tolist() == [
        f"req-{i}" for i in range(5)
    ]


def test_a_row_the_store_refuses_is_dropped_alone(sqlite_url: str) -> None:
    rows = _rows(6, T0)
    broken = (rows[2][0], rows[2][1], None, *rows[2][3:])  # model_name NOT NULL
    log = PredictionLog(sqlite_url, flush_seconds=0.02)
    log.start()
    for row in [*rows[:2], broken, *rows[3:]]:
        log.record(row)
    assert log.flush(timeout=30)
    assert log.close()

    assert (log.stats.written, log.stats.rejected) == (5, 1)
    frame = read_predictions(sqlite_url, T0, T0 + timedelta(hours=1))
    assert frame["request_id"].tolist() == ["req-0", "req-1", "req-3", "req-4", "req-5"]


# ---- through the API ---------------------------------------------------------------------


def test_every_answered_prediction_is_logged_with_its_features(
    champion_name: str, settings_for: Any, sqlite_url: str, tiny_pipeline: Any
) -> None:
    texts = [f"{TEXTS[i % 3]} #{i}" for i in range(12)]
    before = datetime.now(UTC)
    app = create_app(settings_for(champion_name, prediction_log_url=sqlite_url))
    with TestClient(app) as client:
        answers = [client.post("/predict", json={"text": t}).json() for t in texts]
        batch = client.post("/predict/batch", json={"texts": texts[:3]}).json()
    frame = read_predictions(sqlite_url, before, datetime.now(UTC) + timedelta(seconds=1))

    ids = [a["request_id"] for a in answers] + [p["request_id"] for p in batch["predictions"]]
    assert sorted(frame["request_id"]) == sorted(ids)
    frame = frame.set_index("request_id")
    logged = frame.loc[[a["request_id"] for a in answers]]
    assert logged["score"].tolist() == [a["probability"] for a in answers]
    assert logged["prediction"].tolist() == [a["label"] for a in answers]
    assert logged["text"].tolist() == texts
    assert set(logged["model_name"]) == {champion_name}
    assert set(logged["model_version"]) == {"1"}
    pd.testing.assert_frame_equal(
        logged[list(FEATURE_COLUMNS)].reset_index(drop=True),
        build_features(pd.DataFrame({RAW_TEXT: texts})),
    )
    expected = tiny_pipeline.predict_proba(build_features(pd.DataFrame({RAW_TEXT: texts})))[:, 1]
    assert np.array_equal(logged["score"].to_numpy(), expected)


def test_lone_surrogates_are_refused_by_the_api_and_made_readable_by_the_log(
    champion_name: str, settings_for: Any, sqlite_url: str
) -> None:
    headers = {"content-type": "application/json"}
    with TestClient(
        create_app(settings_for(champion_name, prediction_log_url=sqlite_url))
    ) as client:
        batch = client.post(
            "/predict/batch", content=b'{"texts": ["odd \\ud800"]}', headers=headers
        )
        single = client.post("/predict", content=b'{"text": "odd \\ud800"}', headers=headers)
    assert (batch.status_code, single.status_code) == (422, 422)
    assert batch.json()["detail"][0]["loc"] == ["body", "texts", 0]

    row = _rows(1, T0)[0]
    _write(sqlite_url, [(*row[:4], "odd \ud800 text", *row[5:])])
    assert read_predictions(sqlite_url, T0, T0 + timedelta(hours=1))["text"].tolist() == [
        "odd \ufffd\ufffd\ufffd text"
    ]


def test_feedback_endpoint_stores_labels_joined_by_read_predictions(
    champion_name: str, settings_for: Any, sqlite_url: str
) -> None:
    before = datetime.now(UTC)
    with TestClient(
        create_app(settings_for(champion_name, prediction_log_url=sqlite_url))
    ) as client:
        first = client.post("/predict", json={"text": "great"}).json()["request_id"]
        second = client.post("/predict", json={"text": "awful"}).json()["request_id"]
        stored = client.post("/feedback", json={"request_id": first, "label": 1})
        client.post("/feedback", json={"request_id": second, "label": 1})
        corrected = client.post("/feedback", json={"request_id": second, "label": 0})
        unknown = client.post("/feedback", json={"request_id": "never-seen", "label": 1})
        bad = [
            client.post("/feedback", json={"request_id": first, "label": value})
            for value in (2, -1, True, "1", None, 0.5)
        ]
        missing = client.post("/feedback", json={"label": 1})
    frame = read_predictions(sqlite_url, before, datetime.now(UTC) + timedelta(seconds=1))

    assert stored.status_code == 201, stored.text
    assert stored.json()["label_name"] == "positive"
    assert corrected.status_code == 201
    assert unknown.status_code == 404
    assert "never-seen" in unknown.json()["detail"]
    assert [r.status_code for r in bad] == [422] * len(bad)
    assert missing.status_code == 422
    labels = dict(zip(frame["request_id"], frame["feedback_label"], strict=True))
    assert labels == {first: 1, second: 0}


# ---- Postgres -----------------------------------------------------------------------------


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throw-away schema in the local Postgres, dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    schema = f"driftloop_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(POSTGRES, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as error:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES}: {error}")
    try:
        admin.execute(f"CREATE SCHEMA {schema}")
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()


@pytest.mark.postgres
def test_postgres_round_trip_matches_sqlite(postgres_url: str, sqlite_url: str) -> None:
    rows = _rows(8, T0)
    for url in (postgres_url, sqlite_url):
        _write(url, rows)
        log = PredictionLog(url)
        log.start()
        log.add_feedback("req-3", 1)
        log.add_feedback("req-3", 0)
        log.add_feedback("req-5", 1)
        log.close()

    window = (T0 + timedelta(seconds=1), T0 + timedelta(seconds=7))
    from_postgres = read_predictions(postgres_url, *window)
    from_sqlite = read_predictions(sqlite_url, *window)

    _assert_schema(from_postgres)
    assert len(from_postgres) == 6
    # Feedback times are when each store received the label: equal presence, not equal values.
    arrived = from_postgres["feedback_ts"].notna()
    assert arrived.tolist() == from_sqlite["feedback_ts"].notna().tolist()
    pd.testing.assert_frame_equal(
        from_postgres.drop(columns="feedback_ts"), from_sqlite.drop(columns="feedback_ts")
    )
    assert from_postgres["feedback_label"].tolist() == [pd.NA, pd.NA, 0, pd.NA, 1, pd.NA]
    assert arrived.tolist() == [False, False, True, False, True, False]
    assert read_predictions(postgres_url, T0 - timedelta(days=1), T0).empty


@pytest.mark.postgres
@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_tabular_use_case_and_its_shadow_table_round_trip(
    store: str, request: pytest.FixtureRequest, sqlite_url: str
) -> None:
    """Credit rows (typed raw columns + features) and challenger scores, on both stores."""
    from features.credit import FEATURE_COLUMNS as CREDIT_FEATURES
    from features.credit import RAW_COLUMNS as CREDIT_RAW
    from features.credit import build_features as credit_features
    from serving.prediction_log import log_schema, read_shadow_pairs
    from synthetic.credit import generate

    url = request.getfixturevalue("postgres_url") if store == "postgres" else sqlite_url
    schema = log_schema("credit")
    assert (schema.predictions_table, schema.feedback_table) == (
        "predictions_credit",
        "feedback_credit",
    )
    assert schema.raw_dtypes["limit_bal"] == "float64" and schema.raw_dtypes["sex"] == "int64"
    clients = generate(4, seed=3)
    from contracts.sources import load_sources, source_columns

    mapping = source_columns(load_sources()["credit_synthetic"], CREDIT_RAW)
    raw = clients.rename(columns={f: c for c, f in mapping.items()})[list(CREDIT_RAW)]
    raw = raw.astype({c: schema.raw_dtypes[c] for c in CREDIT_RAW})
    features = credit_features(raw)[list(CREDIT_FEATURES)]
    rows = [
        (
            f"c-{i}",
            to_micros(T0 + timedelta(seconds=i)),
            "credit-default",
            "7",
            *(raw[c].iloc[i].item() for c in CREDIT_RAW),  # typed as the API passes them
            *(features[c].iloc[i].item() for c in CREDIT_FEATURES),
            0.25 * i,
            int(i >= 2),
        )
        for i in range(4)
    ]
    log = PredictionLog(url, schema=schema, flush_seconds=0.05)
    log.start()
    for row in rows:
        log.record(tuple(v.item() if isinstance(v, np.generic) else v for v in row))
    log.add_feedback("c-1", 1)
    with pytest.raises(UnknownRequestError):
        log.add_feedback("req-0", 1)  # a review id is not a credit prediction
    assert log.close(timeout=30)
    shadow = PredictionLog(url, schema=schema.shadow(), flush_seconds=0.05)
    shadow.start()
    shadow.record(("c-1", to_micros(T0 + timedelta(seconds=2)), "credit-default", "8", 0.9, 1))
    assert shadow.close(timeout=30)

    frame = read_predictions(url, T0, T0 + timedelta(hours=1), use_case="credit")
    assert list(frame.columns) == list(schema.read_columns)
    assert {c: str(t) for c, t in frame.dtypes.items()} == schema.read_dtypes
    pd.testing.assert_frame_equal(frame[list(CREDIT_RAW)], raw.reset_index(drop=True))
    pd.testing.assert_frame_equal(frame[list(CREDIT_FEATURES)], features.reset_index(drop=True))
    assert frame["feedback_label"].tolist() == [pd.NA, 1, pd.NA, pd.NA]
    assert read_predictions(url, T0, T0 + timedelta(hours=1)).empty  # the reviews table
    pairs = read_shadow_pairs(url, T0, T0 + timedelta(hours=1), use_case="credit")
    assert pairs[["request_id", "champion_version", "challenger_version"]].values.tolist() == [
        ["c-1", "7", "8"]
    ]
    assert pairs["champion_score"].tolist() == [0.25]
    assert pairs["challenger_score"].tolist() == [0.9]
    assert pairs["feedback_label"].tolist() == [1]
