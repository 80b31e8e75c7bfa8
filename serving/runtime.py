"""Everything one app instance serves with, bundled so routes reach it in one lookup."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from serving.batching import MicroBatcher, Scored
from serving.config import ServingSettings
from serving.metrics import ServingMetrics
from serving.model import ModelHolder
from serving.prediction_log import PredictionLog
from serving.ratelimit import RateLimiter

if TYPE_CHECKING:
    from serving.shadow import ShadowScorer


@dataclass
class ServingRuntime:
    """Settings, model holder, batcher, prediction logs, rate limiter, metrics and shadow of one app.

    `holder`, `batcher`, `prediction_log` and `shadow` are the default use case's (the
    unprefixed endpoints); every use case's are in `app.state.use_cases`.
    """

    settings: ServingSettings
    holder: ModelHolder
    metrics: ServingMetrics
    batcher: MicroBatcher
    prediction_log: PredictionLog | None
    rate_limiter: RateLimiter | None
    shadow: ShadowScorer | None = None
    prediction_logs: list[PredictionLog] = field(default_factory=list)
    """Every log this app writes (each use case's predictions and shadow tables)."""

    def log_predictions(
        self,
        request_ids: Sequence[str],
        texts: Sequence[str],
        scored: Scored,
        labels: Sequence[int],
    ) -> None:
        """Queue one prediction-log row per review (never blocks)."""
        if self.prediction_log is not None:
            record_predictions(
                self.prediction_log, request_ids, [(text,) for text in texts], scored, labels
            )


def record_predictions(
    log: PredictionLog,
    request_ids: Sequence[str],
    raws: Sequence[tuple[object, ...]],
    scored: Scored,
    labels: Sequence[int],
) -> None:
    """Queue one prediction-log row per item: id, time, model, raw columns, features, score, label."""
    model = scored.model
    ts_us = scored.ts_us
    record = log.record
    for request_id, raw, features, probability, label in zip(
        request_ids, raws, scored.feature_rows, scored.probabilities, labels, strict=True
    ):
        record(
            (
                request_id,
                ts_us,
                model.name,
                model.version,
                *raw,
                *features,
                float(probability),
                int(label),
            )
        )
