"""Shadow challenger: score a share of live traffic with the `challenger` version, off the path.

When `DRIFTLOOP_SHADOW_FRACTION` > 0, every answered row whose request id falls in the sampled
share is handed to its use case's `ShadowScorer` *after* the champion's answer is built.
`offer` only appends (request id, the raw item, champion version) to a bounded in-memory queue:
no model call, no I/O, no waiting; a full queue skips rows (counted). The scoring itself runs
in another process (`serving.shadow_process`, `serving.shadow_child`): scoring in a thread of
the API worker shared its interpreter lock with the event loop, and even capped to a tenth of
the wall time it slowed the champion's p99 far beyond the 10 % shadow scoring may cost.

The child loads the version holding `DRIFTLOOP_SHADOW_ALIAS` itself, scores, and writes the
use case's shadow table next to the champion's rows (`serving.prediction_store.
read_shadow_pairs` joins them with the feedback label). What it reports back (the version it
holds, rows scored and skipped, busy time) lands here, for `/model-info` and the metrics.

Sampling hashes the request id, so the same request is in or out whatever the worker. A
challenger that is also the champion is not shadow-scored (nothing to compare).
"""

from __future__ import annotations

import collections
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from serving.batching import Scored
from serving.metrics import ServingMetrics
from serving.usecase import ServedUseCase

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
    """One use case's side of shadow scoring in the API worker: sampling, queue, reported state.

    The queue is drained by the worker's `ShadowProcess` feeder, which sends it to the child
    in batches; `version`, `scored_rows` and the metrics are updated from the child's reports.
    """

    def __init__(
        self,
        use_case: ServedUseCase,
        *,
        model_name: str,
        fraction: float,
        alias: str,
        metrics: ServingMetrics,
        max_queue: int = 10_000,
        batch_rows: int = 256,
    ) -> None:
        self.use_case = use_case
        self.model_name = model_name
        self.fraction = fraction
        self.alias = alias
        self.metrics = metrics
        self.max_queue = max_queue
        self.batch_rows = batch_rows
        self.version: str | None = None  # the challenger the child holds, as it last said
        self.scored_rows = 0
        self.busy_seconds = 0.0
        self.process: Any = None  # the worker's ShadowProcess, once attached
        self._queue: collections.deque[tuple[str, Any, str]] = collections.deque()
        self._wake: Callable[[], None] | None = None
        name = use_case.name
        self._scored = metrics.shadow_scored.labels(name)
        self._skipped_full = metrics.shadow_skipped.labels(name, "queue_full")
        self._skipped_none = metrics.shadow_skipped.labels(name, "no_challenger")
        self._busy = metrics.shadow_seconds.labels(name)
        metrics.shadow_fraction.labels(name).set(fraction)

    @property
    def enabled(self) -> bool:
        return self.fraction > 0.0

    def status(self) -> ShadowStatus:
        return ShadowStatus(
            enabled=self.enabled,
            alias=self.alias,
            fraction=self.fraction,
            version=self.version,
            scored_rows=self.scored_rows,
        )

    # ---- request path (event loop): append only ------------------------------------------

    def offer(self, request_ids: Sequence[str], items: Sequence[Any], scored: Scored) -> None:
        """Queue the sampled rows of an answered request; never blocks, never scores."""
        if not self.enabled:
            return
        fraction = self.fraction
        picked = [
            (rid, item)
            for rid, item in zip(request_ids, items, strict=True)
            if sampled(rid, fraction)
        ]
        if not picked:
            return
        if self.version is None:
            self._skipped_none.inc(len(picked))
            return
        champion = scored.model.version
        if self.version == champion:
            return
        room = self.max_queue - len(self._queue)
        if room < len(picked):
            self._skipped_full.inc(len(picked) - max(room, 0))
            picked = picked[: max(room, 0)]
        self._queue.extend((rid, item, champion) for rid, item in picked)
        if len(self._queue) >= self.batch_rows and self._wake is not None:
            self._wake()

    # ---- the feeder and the child's reports (ShadowProcess threads) ----------------------

    def take(self, rows: int) -> list[tuple[str, Any, str]]:
        """Up to `rows` queued rows, oldest first."""
        queue = self._queue
        return [queue.popleft() for _ in range(min(rows, len(queue)))]

    @property
    def depth(self) -> int:
        return len(self._queue)

    def reported(self, scored: int, skipped: dict[str, int], busy_seconds: float) -> None:
        """The child finished a batch: count what it scored and skipped, and its busy time."""
        self.scored_rows += scored
        self.busy_seconds += busy_seconds
        if scored:
            self._scored.inc(scored)
        for reason, rows in skipped.items():
            if rows:
                self.metrics.shadow_skipped.labels(self.use_case.name, reason).inc(rows)
        self._busy.inc(busy_seconds)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row queued so far is scored and written (tests); False on timeout."""
        if self.process is None:
            return not self._queue
        ok: bool = self.process.flush(timeout)
        return ok
