"""The same search on PostgreSQL storage, as in the scaled-out deployment (skipped without it)."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import sqlalchemy.exc

from training.tune import open_storage, redact, tune_family

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

HOST, PORT = "127.0.0.1", 5432
URL = f"postgresql+psycopg2://postgres@{HOST}:{PORT}/test"


def _reachable() -> str | None:
    """None when a Postgres server accepts queries at URL, else why not."""
    try:
        with socket.create_connection((HOST, PORT), timeout=2):
            pass
    except OSError as exc:
        return f"no PostgreSQL server at {HOST}:{PORT} ({exc})"
    try:
        engine = sqlalchemy.create_engine(URL)
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("select 1"))
        engine.dispose()
    except (ImportError, sqlalchemy.exc.SQLAlchemyError) as exc:  # no driver, auth, no db
        return f"PostgreSQL at {HOST}:{PORT} refused {redact(URL)}: {exc}"
    return None


@pytest.fixture(scope="module")
def postgres_url() -> str:
    reason = _reachable()
    if reason:
        pytest.skip(reason)
    return URL


@pytest.fixture
def study_name(postgres_url: str) -> Iterator[str]:
    name = f"driftloop-test-{uuid.uuid4().hex[:10]}"
    yield name
    with contextlib.suppress(KeyError):  # the test failed before the study was created
        optuna.delete_study(study_name=name, storage=open_storage(postgres_url))


def test_search_runs_and_resumes_on_postgres(
    driftloop_home: Path, features_dir: Path, postgres_url: str, study_name: str
) -> None:
    first = tune_family(
        "naive_bayes",
        str(features_dir),
        n_trials=3,
        timeout_s=120,
        study_name=study_name,
        storage=postgres_url,
        seed=4,
        experiment="tune-tests-postgres",
    )
    assert first["n_complete"] + first["n_pruned"] == 3
    assert 0.85 < first["best_value"] <= 1.0

    study = optuna.load_study(study_name=study_name, storage=open_storage(postgres_url))
    assert len(study.trials) == 3
    assert study.user_attrs["family"] == "naive_bayes"
    assert study.user_attrs["mlflow_run_id"] == first["child_run_id"]

    # a second attempt (another worker, same study) only adds what the budget lacks
    second = tune_family(
        "naive_bayes",
        str(features_dir),
        n_trials=5,
        timeout_s=120,
        study_name=study_name,
        storage=postgres_url,
        seed=4,
        experiment="tune-tests-postgres",
    )
    assert second["n_complete"] + second["n_pruned"] == 5
    study = optuna.load_study(study_name=study_name, storage=open_storage(postgres_url))
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert second["best_value"] >= first["best_value"]
