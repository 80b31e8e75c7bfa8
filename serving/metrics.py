"""Prometheus metrics of one serving process (or, in multiprocess mode, of all workers).

Each app owns a `CollectorRegistry`, so tests can build many apps in one
process without name clashes. With several uvicorn workers, `python -m
serving` points `PROMETHEUS_MULTIPROC_DIR` at a fresh folder before the
workers start; every worker then writes its samples there and `/metrics`,
whichever worker answers it, aggregates them all (counters and histograms
summed, per-worker gauges labelled by pid). Without that variable each
worker reports only itself.

Names follow Prometheus conventions: counters end in `_total` (added by the
client library), durations and timestamps are in seconds, sizes in rows.
Label values are bounded: routes are the app's path templates (anything
else is `unmatched`), statuses are HTTP codes, labels are 0/1, `use_case`
takes one value per served use case (the registry's names, a handful), and
`model_version` takes one value per registered version ever served (a
handful over a process's life). Shadow metrics (`driftloop_shadow_*`) count
the rows the `challenger` version scored in the background, per use case. Timestamps are exported rather than ages
("seconds since the alias moved" is `time() - ..._timestamp_seconds` in
PromQL), so a scrape never goes stale between samples.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 20))


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class ServingMetrics:
    """All metrics the API exports; `render()` is the /metrics body."""

    def __init__(self) -> None:
        self.multiprocess = multiprocess_enabled()
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "driftloop_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "driftloop_http_request_duration_seconds",
            "Time from request received to response sent, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "driftloop_batch_size_rows",
            "Rows scored per model call (micro-batches and /predict/batch), by use case.",
            ["use_case"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.scoring_seconds = Histogram(
            "driftloop_scoring_duration_seconds",
            "Features + model time per model call, by use case.",
            ["use_case"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.score = Histogram(
            "driftloop_prediction_score",
            "Distribution of P(label 1) over answered predictions, by model version and use case.",
            ["model_version", "use_case"],
            buckets=SCORE_BUCKETS,
            registry=registry,
        )
        self.predicted = Counter(
            "driftloop_predictions",
            "Answered predictions by predicted label, model version and use case.",
            ["label", "model_version", "use_case"],
            registry=registry,
        )
        self.model_info = Gauge(
            "driftloop_model_info",
            "1 for the model version being served (0 for versions served before).",
            ["name", "version"],
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.model_loaded_at = Gauge(
            "driftloop_model_loaded_timestamp_seconds",
            "Unix time the served model finished loading, by use case.",
            ["use_case"],
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.alias_set_at = Gauge(
            "driftloop_model_alias_set_timestamp_seconds",
            "Unix time the serving alias was moved to the served version (its promoted_at tag; "
            "0 when the version does not say), by use case.",
            ["use_case"],
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.model_load_seconds = Gauge(
            "driftloop_model_load_duration_seconds",
            "Registry lookup + download + unpickle + self-check of the served model, by use case.",
            ["use_case"],
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.reloads = Counter(
            "driftloop_model_reloads",
            "Model load attempts by outcome (loaded, failed).",
            ["outcome"],
            registry=registry,
        )
        self.log_queue_depth = Gauge(
            "driftloop_prediction_log_queue_depth",
            "Predictions waiting in memory to be written to the prediction log, by table.",
            ["table"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.log_written = Counter(
            "driftloop_prediction_log_written_rows",
            "Predictions written to the prediction log.",
            registry=registry,
        )
        self.log_dropped = Counter(
            "driftloop_prediction_log_dropped_rows",
            "Predictions dropped because the in-memory queue was full (store unreachable).",
            registry=registry,
        )
        self.rate_limited = Counter(
            "driftloop_rate_limited_requests",
            "Requests refused with 429, by route template.",
            ["route"],
            registry=registry,
        )
        self.rate_limiter_errors = Counter(
            "driftloop_rate_limiter_errors",
            "Rate-limit checks that failed (Redis unreachable); such requests are let through.",
            registry=registry,
        )
        self.shadow_scored = Counter(
            "driftloop_shadow_scored_rows",
            "Answered rows the challenger version also scored in the background, by use case.",
            ["use_case"],
            registry=registry,
        )
        self.shadow_skipped = Counter(
            "driftloop_shadow_skipped_rows",
            "Rows sampled for shadow scoring but not scored (queue_full, no_challenger, error).",
            ["use_case", "reason"],
            registry=registry,
        )
        self.shadow_seconds = Counter(
            "driftloop_shadow_scoring_seconds",
            "Time the shadow process spent shadow-scoring (features + challenger), by use case.",
            ["use_case"],
            registry=registry,
        )
        self.shadow_restarts = Counter(
            "driftloop_shadow_process_restarts",
            "Times the shadow-scoring child process died (or failed to start) and was restarted.",
            registry=registry,
        )
        self.shadow_fraction = Gauge(
            "driftloop_shadow_fraction",
            "Configured share of answered rows sampled for shadow scoring (0 = off), by use case.",
            ["use_case"],
            registry=registry,
            multiprocess_mode="liveall",
        )
        if not self.multiprocess:
            ProcessCollector(registry=registry)
        self._served: dict[str, tuple[str, str]] = {}
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._version: dict[str, str] = {}
        self._score_children: dict[tuple[str, str], tuple[Any, Any, Any, Any, Any]] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count and time one answered request (label lookups cached: this runs per request)."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def set_model(
        self,
        name: str,
        version: str,
        loaded_at_unix: float,
        load_seconds: float,
        alias_set_at_unix: float | None = None,
        use_case: str = "reviews",
    ) -> None:
        """Point one use case's model gauges at a newly loaded version."""
        previous = self._served.get(use_case)
        if previous is not None and previous != (name, version):
            self.model_info.labels(*previous).set(0)
        self.model_info.labels(name, version).set(1)
        self._served[use_case] = (name, version)
        self.model_loaded_at.labels(use_case).set(loaded_at_unix)
        self.model_load_seconds.labels(use_case).set(load_seconds)
        self.alias_set_at.labels(use_case).set(alias_set_at_unix or 0.0)
        self._version[use_case] = version

    def observe_batch(
        self,
        rows: int,
        seconds: float,
        scores: Sequence[float],
        threshold: float,
        use_case: str = "reviews",
    ) -> None:
        """One model call: its size and time, and the score and label of every row in it."""
        version = self._version.get(use_case, "none")
        children = self._score_children.get((use_case, version))
        if children is None:
            children = (
                self.score.labels(version, use_case),
                self.predicted.labels("0", version, use_case),
                self.predicted.labels("1", version, use_case),
                self.batch_size.labels(use_case),
                self.scoring_seconds.labels(use_case),
            )
            self._score_children[(use_case, version)] = children
        children[3].observe(rows)
        children[4].observe(seconds)
        observe = children[0].observe
        positives = 0
        for value in scores:
            observe(value)
            positives += value >= threshold
        if positives:
            children[2].inc(positives)
        if len(scores) - positives:
            children[1].inc(len(scores) - positives)

    def render(self) -> bytes:
        """The exposition text: this registry, or every worker's files in multiprocess mode."""
        if self.multiprocess:
            registry = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
