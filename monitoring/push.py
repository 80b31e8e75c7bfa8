"""Push batch-job figures to a Prometheus Pushgateway.

Batch tasks (the drift check, the training pipeline) end before any scrape
could reach them, so they push their figures to a Pushgateway that
Prometheus scrapes. The gateway is optional: with `DRIFTLOOP_PUSHGATEWAY_URL`
unset every push is a no-op that says so once in the log, and a gateway that
does not answer is logged as a warning — monitoring never fails the pipeline
it watches.

A run's first push replaces its whole group; later pushes of the same run
replace only the metrics of the same names (`pushadd`), so several tasks of
one DAG run each add their part to one group. Groups
are keyed by job and use case, not by DAG run: a per-run group would never
leave the gateway, so yesterday's drift verdict would keep alerting after
today's run cleared it. The DAG run that produced the figures is the
`dag_run` label of the job's `..._run_info` sample instead (one value per
group at a time).
"""

from __future__ import annotations

import logging
import math
import os
import urllib.error
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, pushadd_to_gateway

log = logging.getLogger(__name__)

PUSHGATEWAY_ENV = "DRIFTLOOP_PUSHGATEWAY_URL"
PUSH_TIMEOUT_SECONDS = 5.0

_said_disabled = False


@dataclass(frozen=True)
class Sample:
    """One gauge value: `name{labels} value` (documentation goes in `help`)."""

    name: str
    value: float
    help: str
    labels: Mapping[str, str] = field(default_factory=dict)


def pushgateway_url() -> str | None:
    """The gateway address from the environment, or None when pushing is off."""
    url = os.environ.get(PUSHGATEWAY_ENV, "").strip()
    return url or None


def build_registry(samples: Iterable[Sample]) -> CollectorRegistry:
    """A fresh registry holding `samples` as gauges (non-finite values are left out).

    Samples of one name must carry the same label names; a mismatch is a
    programming error and raises ValueError naming the metric.
    """
    registry = CollectorRegistry()
    gauges: dict[str, tuple[Gauge, tuple[str, ...]]] = {}
    for sample in samples:
        if sample.value is None or not math.isfinite(float(sample.value)):
            continue
        names = tuple(sorted(sample.labels))
        known = gauges.get(sample.name)
        if known is None:
            known = (Gauge(sample.name, sample.help, names, registry=registry), names)
            gauges[sample.name] = known
        if known[1] != names:
            raise ValueError(
                f"metric {sample.name} pushed with labels {names} and {known[1]}; "
                "every sample of one metric needs the same label names"
            )
        gauge = known[0].labels(**{k: str(sample.labels[k]) for k in names}) if names else known[0]
        gauge.set(float(sample.value))
    return registry


def push(
    job: str, grouping: Mapping[str, str], samples: Iterable[Sample], *, replace: bool = False
) -> bool:
    """Push `samples` into the group (job, grouping); True if the gateway took them.

    `replace` empties the group first (the first push of a run, so no figure of
    an earlier run survives); otherwise only metrics of the same names are replaced.
    """
    global _said_disabled
    url = pushgateway_url()
    if url is None:
        if not _said_disabled:
            log.info("%s is not set: batch metrics are not pushed anywhere", PUSHGATEWAY_ENV)
            _said_disabled = True
        return False
    registry = build_registry(samples)
    try:
        send = push_to_gateway if replace else pushadd_to_gateway
        send(
            url,
            job=job,
            registry=registry,
            grouping_key=dict(grouping),
            timeout=PUSH_TIMEOUT_SECONDS,
        )
    except (urllib.error.URLError, OSError) as error:
        log.warning("could not push %s metrics to the Pushgateway at %s: %s", job, url, error)
        return False
    log.info("pushed %s metrics %s to %s", job, dict(grouping), url)
    return True
