"""The shadow thread scores in short slices, so a request never waits long for the interpreter."""

from __future__ import annotations

import pytest

from serving.metrics import ServingMetrics
from serving.model import ModelHolder
from serving.shadow import ShadowScorer
from serving.usecase import served_use_case


def _shadow(batch_rows: int = 256, slice_seconds: float = 0.002) -> ShadowScorer:
    return ShadowScorer(
        served_use_case("credit"),
        ModelHolder("sqlite:///:memory:", use_case="credit"),
        fraction=0.5,
        alias="challenger",
        threshold=0.5,
        prediction_log=None,
        metrics=ServingMetrics(),
        batch_rows=batch_rows,
        slice_seconds=slice_seconds,
    )


def test_the_first_call_scores_one_row_to_measure_the_challenger() -> None:
    assert _shadow().rows_per_call() == 1


@pytest.mark.parametrize(
    ("seconds_per_row", "rows"),
    [(0.0005, 4), (0.004, 1), (0.00001, 200), (0.000001, 256)],
)
def test_a_call_holds_about_slice_seconds_of_work(seconds_per_row: float, rows: int) -> None:
    shadow = _shadow()
    shadow._seconds_per_row = seconds_per_row
    assert shadow.rows_per_call() == rows


def test_the_measured_cost_follows_what_a_call_took() -> None:
    shadow = _shadow(batch_rows=4)
    for index in range(10):
        shadow._queue.append((f"r{index}", {}))
    shadow._score_some()  # no challenger loaded: the rows are skipped, and timed
    assert shadow._seconds_per_row > 0.0
    assert len(shadow._queue) == 9
    shadow._seconds_per_row = 1e-9
    shadow._score_some()
    assert len(shadow._queue) == 5  # capped at batch_rows
