"""Write real prediction-log rows and feedback labels (SQLite), with chosen timestamps.

Predictions go through serving's writer (`PredictionLog`); labels through the
store with the time they arrive, so a test can make them land days late.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd

from features.reviews import FEATURE_COLUMNS, build_features
from serving.prediction_log import PredictionLog, rows_for
from serving.prediction_store import open_store, to_micros


def log_predictions(
    url: str,
    request_ids: Sequence[str],
    texts: Sequence[str],
    scores: Sequence[float],
    ts: datetime,
    model_name: str,
    model_version: str = "1",
    threshold: float = 0.5,
) -> None:
    features = build_features(pd.DataFrame({"text": list(texts)}))
    rows = rows_for(
        list(request_ids),
        to_micros(ts),
        model_name,
        model_version,
        list(texts),
        list(features[list(FEATURE_COLUMNS)].itertuples(index=False, name=None)),
        np.asarray(scores, dtype="float64"),
        [int(s >= threshold) for s in scores],
    )
    writer = PredictionLog(url, flush_seconds=0.02)
    writer.start()
    for row in rows:
        writer.record(row)
    assert writer.close(timeout=30)


def add_labels(url: str, labels: dict[str, int], arrived: datetime) -> None:
    """Feedback for logged request ids, stored as arriving at `arrived`."""
    store = open_store(url)
    for request_id, label in labels.items():
        store.add_feedback(request_id, int(label), to_micros(arrived))
