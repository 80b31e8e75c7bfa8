"""Shadow challenger: score a share of live traffic with the `challenger` version, off the path.

When `DRIFTLOOP_SHADOW_FRACTION` > 0 and a version of a use case's model holds the
`challenger` alias (`DRIFTLOOP_SHADOW_ALIAS`), every answered row whose request id falls in the
sampled share is handed to that use case's `ShadowScorer` *after* the champion's answer is
built: `offer` only appends to a bounded queue (no model call, no I/O). A background thread
wakes every `shadow_interval_seconds` and scores what was queued with the challenger in short
slices (as many rows as take about 2 ms, measured, at most `shadow_batch_rows` per call, so a
request never waits long for the interpreter while the thread holds it), and writes (request
id, challenger version, score, label) to the use case's shadow table of the prediction log,
next to the champion's row for the same request id (`serving.prediction_store.read_shadow_pairs` joins them with the
feedback label). After each call the thread sleeps long enough that scoring takes at most
`shadow_max_duty` (10 %) of the wall time, so under any load the challenger can take only that
share of the interpreter from the request path; what it cannot keep up with waits in the
queue, and a full queue skips rows (counted) rather than grow. The thread's busy time is
exported (`driftloop_shadow_scoring_seconds_total`).

Sampling hashes the request id, so the same request is in or out whatever the worker. A
challenger that is also the champion is not shadow-scored (nothing to compare). The challenger
is followed like the champion: polled at the reload interval, swapped when the alias moves,
dropped when the alias is removed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from serving.batching import Scored
from serving.metrics import ServingMetrics
from serving.model import LoadedModel, ModelHolder, ModelLoadError, ModelNotFoundError
from serving.prediction_log import PredictionLog
from serving.usecase import ServedUseCase

log = logging.getLogger(__name__)

_BUCKETS = 1_000_000


def sampled(request_id: str, fraction: float) -> bool:
    """Whether this request id is in the shadow-scored share (stable across workers)."""
    if fraction <= 0.0:
        return False
    if fraction >= 1.0:
        return True
    return zlib.crc32(request_id.encode("utf-8", "surrogatepass")) % _BUCKETS < fraction * _BUCKETS


@dataclass(frozen=True)
class ShadowStatus:
    """What /model-info says about shadow scoring."""

    enabled: bool
    alias: str
    fraction: float
    version: str | None
    scored_rows: int


class ShadowScorer:
    """One use case's challenger, its queue of sampled rows and the thread that scores them."""

    def __init__(
        self,
        use_case: ServedUseCase,
        holder: ModelHolder,
        *,
        fraction: float,
        alias: str,
        threshold: float,
        prediction_log: PredictionLog | None,
        metrics: ServingMetrics,
        max_queue: int = 10_000,
        batch_rows: int = 256,
        interval_seconds: float = 0.5,
        max_duty: float = 0.1,
        slice_seconds: float = 0.002,
    ) -> None:
        self.use_case = use_case
        self.holder = holder
        self.fraction = fraction
        self.alias = alias
        self.threshold = threshold
        self.prediction_log = prediction_log
        self.metrics = metrics
        self.max_queue = max_queue
        self.batch_rows = batch_rows
        self.interval_seconds = interval_seconds
        self.max_duty = max_duty
        self.slice_seconds = slice_seconds
        self._seconds_per_row = 0.0  # measured: the challenger's cost of one row in a call
        self.scored_rows = 0
        self.busy_seconds = 0.0
        self._queue: collections.deque[tuple[str, Any]] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()
        name = use_case.name
        self._scored = metrics.shadow_scored.labels(name)
        self._skipped_full = metrics.shadow_skipped.labels(name, "queue_full")
        self._skipped_none = metrics.shadow_skipped.labels(name, "no_challenger")
        self._skipped_error = metrics.shadow_skipped.labels(name, "error")
        self._busy = metrics.shadow_seconds.labels(name)
        metrics.shadow_fraction.labels(name).set(fraction)

    @property
    def enabled(self) -> bool:
        return self.fraction > 0.0

    def status(self) -> ShadowStatus:
        model = self.holder.current
        return ShadowStatus(
            enabled=self.enabled,
            alias=self.alias,
            fraction=self.fraction,
            version=model.version if model is not None else None,
            scored_rows=self.scored_rows,
        )

    # ---- request path (event loop): append only ------------------------------------------

    def offer(self, request_ids: Sequence[str], items: Sequence[Any], scored: Scored) -> None:
        """Queue the sampled rows of an answered request; never blocks, never scores."""
        if not self.enabled:
            return
        picked = [
            (rid, item)
            for rid, item in zip(request_ids, items, strict=True)
            if sampled(rid, self.fraction)
        ]
        if not picked:
            return
        challenger = self.holder.current
        if challenger is None:
            self._skipped_none.inc(len(picked))
            return
        if challenger.version == scored.model.version:
            return
        room = self.max_queue - len(self._queue)
        if room < len(picked):
            self._skipped_full.inc(len(picked) - max(room, 0))
            picked = picked[: max(room, 0)]
        self._queue.extend(picked)

    # ---- background thread -------------------------------------------------------------

    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"driftloop-shadow-{self.use_case.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Score what is queued, then stop the thread."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row queued so far is scored (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._queue and self._idle.is_set():
                return True
            self._wake.set()
            time.sleep(0.01)
        return False

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval_seconds)
            self._wake.clear()
            while self._queue:
                self._idle.clear()
                started = time.perf_counter()
                try:
                    self._score_some()
                finally:
                    self._idle.set()
                busy = time.perf_counter() - started
                self.busy_seconds += busy
                self._busy.inc(busy)
                if self._queue and not self._stopping and self.max_duty < 1.0:
                    # Leave the interpreter to the request path: at most `max_duty` of the
                    # wall time goes to shadow scoring, whatever the load.
                    time.sleep(busy * (1.0 / self.max_duty - 1.0))
            if self._stopping:
                return

    def rows_per_call(self) -> int:
        """Rows the next call scores: about `slice_seconds` of work, at most `batch_rows`.

        The thread holds the interpreter while it scores, and a request that needs it meanwhile
        waits: short slices keep that wait to about `slice_seconds`, so the champion's tail
        latency moves little; the duty cap then spaces the slices out.
        """
        if self._seconds_per_row <= 0.0:
            return 1
        return max(1, min(self.batch_rows, int(self.slice_seconds / self._seconds_per_row)))

    def _score_some(self) -> None:
        batch: list[tuple[str, Any]] = []
        rows = self.rows_per_call()
        while self._queue and len(batch) < rows:
            batch.append(self._queue.popleft())
        if not batch:
            return
        started = time.perf_counter()
        try:
            self._score_batch(batch)
        finally:
            per_row = (time.perf_counter() - started) / len(batch)
            seen = self._seconds_per_row
            self._seconds_per_row = per_row if seen <= 0.0 else 0.8 * seen + 0.2 * per_row

    def _score_batch(self, batch: list[tuple[str, Any]]) -> None:
        model = self.holder.current
        if model is None:
            self._skipped_none.inc(len(batch))
            return
        try:
            probabilities = self._score(model, [item for _, item in batch])
        except Exception:
            log.exception("shadow scoring %d rows with %s failed", len(batch), model.version)
            self._skipped_error.inc(len(batch))
            return
        ts_us = time.time_ns() // 1000
        threshold = model.threshold(self.threshold)  # the challenger's own, else the default
        if self.prediction_log is not None:
            for (request_id, _), probability in zip(batch, probabilities, strict=True):
                p = float(probability)
                self.prediction_log.record(
                    (request_id, ts_us, model.name, model.version, p, int(p >= threshold))
                )
        self.scored_rows += len(batch)
        self._scored.inc(len(batch))

    def _score(self, model: LoadedModel, items: list[Any]) -> Any:
        columns = self.use_case.featurize(items)
        return model.scorer.score(columns)


async def keep_challenger_loaded(
    shadow: ShadowScorer, model_name: str, poll_seconds: float
) -> None:
    """Follow `<model>@<shadow alias>` for the life of the app; drop it when the alias goes."""
    holder = shadow.holder
    while True:
        try:
            loaded = await anyio.to_thread.run_sync(
                holder.reload_if_changed, model_name, shadow.alias
            )
            if loaded is not None:
                log.info(
                    "shadow: %s version %s (alias %s) scores %.0f %% of %s traffic",
                    model_name,
                    loaded.version,
                    shadow.alias,
                    100 * shadow.fraction,
                    shadow.use_case.name,
                )
        except ModelNotFoundError as error:
            if holder.current is not None:
                log.info("shadow: %s@%s is gone; shadow scoring paused", model_name, shadow.alias)
            holder.clear(str(error))
        except ModelLoadError as error:
            log.warning("shadow: %s", error)
        except Exception:
            log.exception("shadow: loading %s@%s failed unexpectedly", model_name, shadow.alias)
        await asyncio.sleep(poll_seconds)
