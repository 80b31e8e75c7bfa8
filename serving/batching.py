"""Adaptive micro-batching: concurrent requests share one vectorised model call.

Every request hands its text(s) to `MicroBatcher.score` and awaits a future.
The batcher scores on the event loop, not in a thread: the work is GIL-bound
CPU, so a thread hop would only add latency. When to score:

- a lone request (the previous batch held one group) is scored at the next
  turn of the loop, together with whatever else was already queued, so at
  concurrency 1 nothing waits;
- under concurrent load (the previous batch held several groups) the batcher
  waits up to `max_wait` for more requests to arrive, but no longer than
  until its target number of requests (or `max_size` reviews) is queued, so
  a steady load never waits for requests that are not coming. The target is
  the number of groups in the previous batch plus the clients answered in the
  batch before it that have not come back yet but are known to come back;
- closed-loop clients (each sends its next request when answered) otherwise
  settle into alternating cohorts: while one batch is scored on the event
  loop, the other clients' requests wait in the socket buffers and form the
  next batch, which is exactly "as many as last time", so each batch holds
  about half of the clients. Callers therefore name their client (the
  connection's address): a client answered in the previous batch, absent
  from the one being taken and seen in a batch before, is expected back, so
  the target covers both cohorts and the next batch waits for the answered
  cohort instead of leaving without it. With named clients a batch waits as
  long as requests keep arriving (no gap longer than `max_wait`), and no
  longer in all than the last model call took (at least `max_wait`):
  answered clients come back one by one, each parsed on this event loop, so
  a fixed `max_wait` from the first arrival would often close the batch
  before they are in. A lone client (or callers that name none) keeps the old rule,
  so at concurrency 1 nothing waits;
- while a batch is being scored, new requests queue up behind it, so batch
  size grows with load on its own.

A group (one /predict request, or all reviews of one /predict/batch request)
is never split. Each batch is scored with one model snapshot, so every answer
names the version that produced it even while a reload swaps models. If a
batch fails, its groups are retried one by one so a request can only fail
because of its own input.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.model import LoadedModel, ModelHolder, ModelNotLoadedError
from serving.usecase import served_use_case

log = logging.getLogger(__name__)

BatchObserver = Callable[[int, float, np.ndarray], None]
"""Called after each model call with (reviews, seconds, probabilities)."""


@dataclass(frozen=True)
class Scored:
    """One group's answer: the model that scored it, P(positive) and features per review."""

    model: LoadedModel
    probabilities: np.ndarray
    feature_rows: list[tuple[Any, ...]]
    ts_us: int


@dataclass
class _Group:
    texts: Sequence[Any]  # items: texts, or request rows of a tabular use case
    future: asyncio.Future[Scored]
    client: Hashable | None = None


# Batches whose clients are remembered: the previous one (answered, its clients expected
# back) and the two before it (to know that those clients do come back).
_CLIENT_HISTORY = 3


def _client_key(client: Any) -> Hashable | None:
    """A hashable name for the caller: ASGI's `scope["client"]` is [host, port] or (host, port)."""
    if client is None:
        return None
    if isinstance(client, list):
        return tuple(client)
    try:
        hash(client)
    except TypeError:
        return None
    return client


class MicroBatcher:
    """Gathers groups of texts and scores them together with the current model."""

    def __init__(
        self,
        holder: ModelHolder,
        *,
        max_size: int = 64,
        max_wait_seconds: float = 0.002,
        on_batch: BatchObserver | None = None,
    ) -> None:
        self.holder = holder
        self.max_size = max_size
        self.max_wait_seconds = max_wait_seconds
        self.on_batch = on_batch
        self.batches = 0
        self._pending: collections.deque[_Group] = collections.deque()
        self._pending_rows = 0
        self._handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self._immediate = False
        self._target = 1
        self._named = False  # the target counts named clients, who come back one by one
        self._last_call_seconds = 0.0
        self._deadline = 0.0
        self._recent_clients: collections.deque[frozenset[Hashable]] = collections.deque(
            maxlen=_CLIENT_HISTORY
        )

    @property
    def pending(self) -> int:
        """Reviews waiting to be scored."""
        return self._pending_rows

    @property
    def target(self) -> int:
        """Groups the next batch waits for (at most `max_wait`) under load; 1 = no waiting."""
        return self._target

    async def score(self, texts: Sequence[Any], client: Hashable | None = None) -> Scored:
        """Score `texts` (one request's items: texts or rows) in the next batch.

        `client` names the caller (e.g. the connection's (host, port)) so the batcher
        can tell that a client answered earlier will come back; None = unknown. ASGI
        servers give the address as a tuple or as a list: either is accepted.
        """
        client = _client_key(client)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Scored] = loop.create_future()
        self._pending.append(_Group(texts, future, client))
        self._pending_rows += len(texts)
        if self._pending_rows >= self.max_size or (
            self._target > 1 and len(self._pending) >= self._target
        ):
            self._schedule(loop, immediate=True)
        elif self._handle is None:
            loaded = self._target > 1 and self.max_wait_seconds > 0
            self._schedule(loop, immediate=not loaded)
            if loaded and self._named:
                # Answered clients come back one request at a time, each parsed on this
                # loop: wait while they keep arriving, up to as long as the last model call.
                self._deadline = loop.time() + max(self.max_wait_seconds, self._last_call_seconds)
        elif self._named and not self._immediate:
            when = min(loop.time() + self.max_wait_seconds, self._deadline)
            self._handle.cancel()
            self._handle = loop.call_at(when, self._flush)
        return await future

    def _schedule(self, loop: asyncio.AbstractEventLoop, *, immediate: bool) -> None:
        if self._handle is not None:
            if self._immediate or not immediate:
                return
            self._handle.cancel()
        self._immediate = immediate
        if immediate:
            self._handle = loop.call_soon(self._flush)
        else:
            self._handle = loop.call_later(self.max_wait_seconds, self._flush)

    def _take(self) -> list[_Group]:
        taken: list[_Group] = []
        rows = 0
        while self._pending and (not taken or rows + len(self._pending[0].texts) <= self.max_size):
            group = self._pending.popleft()
            self._pending_rows -= len(group.texts)
            if group.future.done():  # cancelled by the request timeout
                continue
            taken.append(group)
            rows += len(group.texts)
        return taken

    def _flush(self) -> None:
        self._handle = None
        groups = self._take()
        if self._pending:
            self._schedule(asyncio.get_running_loop(), immediate=True)
        if not groups:
            return
        self._target = self._next_target(groups)
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.score_now(groups)
        self._last_call_seconds = loop.time() - started

    def _next_target(self, groups: list[_Group]) -> int:
        """This batch's groups plus the previous batch's clients that will come back."""
        clients = frozenset(g.client for g in groups if g.client is not None)
        target = len(groups)
        self._named = bool(clients)
        if self._recent_clients:
            previous = self._recent_clients[-1]
            earlier = frozenset().union(*list(self._recent_clients)[:-1])
            # Answered one batch ago, not in this one, and seen before that: a closed-loop
            # client of the other cohort, on its way back.
            target += len((previous - clients) & earlier)
        self._recent_clients.append(clients)
        return max(1, min(target, self.max_size))

    def score_now(self, groups: list[_Group]) -> None:
        """Score these groups in one call and resolve their futures."""
        model = self.holder.current
        if model is None:
            error = ModelNotLoadedError(self.holder.not_ready_reason())
            for group in groups:
                if not group.future.done():
                    group.future.set_exception(error)
            return
        try:
            self._score_groups(model, groups)
        except Exception as error:
            if len(groups) == 1:
                log.exception("scoring a request failed")
                if not groups[0].future.done():
                    groups[0].future.set_exception(error)
                return
            log.warning(
                "a batch of %d requests failed (%s); scoring them one by one", len(groups), error
            )
            for group in groups:
                self.score_now([group])

    def _score_groups(self, model: LoadedModel, groups: list[_Group]) -> None:
        texts: list[Any] = []
        for group in groups:
            texts.extend(group.texts)
        use_case = getattr(self.holder, "use_case", None) or served_use_case()
        started = time.perf_counter()
        columns = use_case.featurize(texts)
        probabilities = model.scorer.score(columns)
        elapsed = time.perf_counter() - started
        rows = list(zip(*(columns[name] for name in use_case.feature_columns), strict=True))
        ts_us = time.time_ns() // 1000
        self.batches += 1
        if self.on_batch is not None:
            self.on_batch(len(texts), elapsed, probabilities)
        start = 0
        for group in groups:
            end = start + len(group.texts)
            if not group.future.done():
                group.future.set_result(
                    Scored(model, probabilities[start:end], rows[start:end], ts_us)
                )
            start = end

    async def drain(self) -> None:
        """Score everything still queued (at shutdown)."""
        while self._pending:
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
            groups = self._take()
            if groups:
                self.score_now(groups)
            await asyncio.sleep(0)
