"""The registry gate also judges champion vs challenger on live labelled traffic.

Real pieces: an MLflow (SQLite) registry, models trained by `train_model`, and a SQLite
prediction log written by serving's writer (`PredictionLog`): the champion's answers, the
challenger's shadow scores in the shadow table, and `/feedback` labels through the store.
`register_and_gate` reads them with `serving.live_compare.live_comparison`.

The shadow rows name the version the challenger gets when it is registered (each test uses
a fresh registered model, so the champion is v1 and the challenger v2): the log then holds
exactly the pairs a shadow-scored challenger leaves behind.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.reviews import FEATURE_COLUMNS, build_features
from serving.prediction_log import PredictionLog, rows_for
from serving.prediction_store import log_schema, open_store, to_micros
from synthetic.reviews import generate_reviews
from training import mlflow_utils
from training.promote import register_and_gate
from training.train import train_model

pytestmark = pytest.mark.slow

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def runs(
    driftloop_home: Path,
    features_dir: Path,
    review_table: pd.DataFrame,
    tmp_path_factory: pytest.TempPathFactory,
    write_folder: Callable[..., Path],
) -> dict[str, Any]:
    """A model trained on shuffled labels (the champion) and a good one (the challenger)."""
    table = review_table.copy()
    fit_rows = table["split"] != "test"
    rng = np.random.default_rng(1)
    table.loc[fit_rows, "label"] = rng.permutation(table.loc[fit_rows, "label"].to_numpy())
    shuffled = write_folder(table, tmp_path_factory.mktemp("live-shuffled") / "features")
    return {
        "weak": train_model(str(shuffled), experiment="live-gate", run_name="weak"),
        "good": train_model(str(features_dir), experiment="live-gate", run_name="good"),
    }


def _scores(labels: np.ndarray, rng: np.random.Generator, flip: float) -> np.ndarray:
    """Confident scores that agree with the label except on a `flip` share of rows."""
    agree = rng.random(len(labels)) >= flip
    n = len(labels)
    right = np.where(labels == 1, rng.uniform(0.7, 0.95, n), rng.uniform(0.05, 0.3, n))
    return np.where(agree, right, 1.0 - right)


def write_live_traffic(
    url: str, model: str, rows: int, champion_flip: float, challenger_flip: float
) -> None:
    """`rows` answered reviews (v1), each shadow-scored by v2, each with a feedback label."""
    reviews = generate_reviews(rows, seed=21)
    labels = reviews["label"].to_numpy()
    rng = np.random.default_rng(3)
    champion, challenger = (
        _scores(labels, rng, champion_flip),
        _scores(labels, rng, challenger_flip),
    )
    ids = [f"{model}-{i}" for i in range(rows)]
    ts = to_micros(NOW - timedelta(days=2))
    features = build_features(reviews[["text"]])[list(FEATURE_COLUMNS)]
    answered = PredictionLog(url, flush_seconds=0.02)
    answered.start()
    for row in rows_for(
        ids,
        ts,
        model,
        "1",
        reviews["text"].tolist(),
        list(features.itertuples(index=False, name=None)),
        champion,
        [int(s >= 0.5) for s in champion],
    ):
        answered.record(row)
    assert answered.close(timeout=30)
    shadow = PredictionLog(url, schema=log_schema("reviews").shadow(), flush_seconds=0.02)
    shadow.start()
    for request_id, score in zip(ids, challenger, strict=True):
        shadow.record((request_id, ts + 1000, model, "2", float(score), int(score >= 0.5)))
    assert shadow.close(timeout=30)
    store = open_store(url)
    for request_id, label in zip(ids, labels, strict=True):
        store.add_feedback(request_id, int(label), to_micros(NOW - timedelta(days=1)))


def _gate(
    runs: dict[str, Any], features_dir: Path, url: str, model: str
) -> tuple[dict[str, Any], dict[str, str]]:
    first = register_and_gate(runs["weak"]["run_id"], model, str(features_dir), store_url=url)
    assert first["promoted"] and first["version"] == "1"
    second = register_and_gate(runs["good"]["run_id"], model, str(features_dir), store_url=url)
    assert second["version"] == "2"
    return second, mlflow_utils.client().get_model_version(model, "2").tags


def _aliases(model: str) -> dict[str, str]:
    aliases = mlflow_utils.client().get_registered_model(model).aliases
    return {alias: str(version) for alias, version in aliases.items()}


def test_wins_offline_loses_live_is_held_back(
    runs: dict[str, Any], features_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="training.promote")
    model, url = f"live-{uuid.uuid4().hex[:8]}", f"sqlite:///{tmp_path / 'predictions.db'}"
    # On live traffic the challenger calls 40 % of the reviews wrong, the champion 10 %.
    write_live_traffic(url, model, 300, champion_flip=0.1, challenger_flip=0.4)
    second, tags = _gate(runs, features_dir, url, model)

    assert not second["promoted"]
    assert _aliases(model) == {"champion": "1", "challenger": "2"}
    overall = [c for c in second["decision"]["checks"] if c["scope"] == "overall"]
    assert overall and all(c["verdict"] == "ok" for c in overall)  # it wins offline
    assert tags["gate.promote"] == "false"
    assert tags["gate.reason"].startswith("held back on live traffic")
    assert tags["gate.live"] == "judged" and tags["gate.live_labelled_rows"] == "300"
    report = json.loads(tags["gate.report"])
    live_rows = [r for r in report["checks"] if r[0] == "live"]
    assert {r[1] for r in live_rows} == {"roc_auc", "balanced_accuracy", "log_loss"}
    assert all(r[-1] == "regressed" for r in live_rows)
    assert report["live"]["champion_version"] == "1"
    assert "live" in caplog.text and "300 labelled shadow-scored rows" in caplog.text
    assert "| live " in caplog.text  # every live number on its own log line


def test_wins_offline_and_live_is_promoted(
    runs: dict[str, Any], features_dir: Path, tmp_path: Path
) -> None:
    model, url = f"live-{uuid.uuid4().hex[:8]}", f"sqlite:///{tmp_path / 'predictions.db'}"
    write_live_traffic(url, model, 300, champion_flip=0.3, challenger_flip=0.1)
    second, tags = _gate(runs, features_dir, url, model)

    assert second["promoted"], tags["gate.reason"]
    assert _aliases(model) == {"champion": "2"}
    assert tags["gate.live"] == "judged" and "live traffic agrees" in tags["gate.reason"]


def test_too_few_labelled_live_rows_decides_offline_and_says_so(
    runs: dict[str, Any], features_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="training.promote")
    model, url = f"live-{uuid.uuid4().hex[:8]}", f"sqlite:///{tmp_path / 'predictions.db'}"
    # A challenger that is far worse live, but on fewer rows than gate.yaml's min_labelled_rows.
    write_live_traffic(url, model, 50, champion_flip=0.05, challenger_flip=0.5)
    second, tags = _gate(runs, features_dir, url, model)

    assert second["promoted"]
    assert tags["gate.live"] == "too_few_rows" and tags["gate.live_labelled_rows"] == "50"
    assert "decided on offline metrics alone" in tags["gate.reason"]
    assert "fewer than min_labelled_rows 200" in caplog.text
