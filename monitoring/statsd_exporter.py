"""Airflow's StatsD metrics as a Prometheus endpoint.

    python -m monitoring.statsd_exporter --statsd-port 9125 --web-port 9102 \
        --seed-dag training_pipeline --seed-dag drift_check

Airflow sends its own metrics (scheduler heartbeat, task and DAG-run
durations, task outcomes) over StatsD (`AIRFLOW__METRICS__STATSD_ON=True`).
Prometheus' `statsd_exporter` is not packaged for Debian or PyPI, so this
small bridge receives the UDP datagrams and exposes them for scraping.

Airflow 3 sends each metric under its modern name and, for metrics whose
old name embedded ids, under a legacy name too (`dagrun.duration.failed.<dag_id>`).
`MAPPINGS` turns the legacy names (or modern names with DogStatsD `#tags`)
into one Prometheus metric with labels; a modern name without the tags it
needs is dropped so nothing is counted twice. Other names are exported as
`airflow_<name>` (counters `_total`, timers as `_seconds` histograms), at
most `MAX_METRICS` of them so a misbehaving sender cannot grow the endpoint
without bound. `--seed-dag` creates the DAG-run series at zero, so the first
failure after a restart is already an increase Prometheus can alert on.
"""

from __future__ import annotations

import argparse
import logging
import re
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

DURATION_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
MAX_METRICS = 500
PREFIX = "airflow"


@dataclass(frozen=True)
class Mapping:
    """`pattern` on the StatsD name (prefix removed) -> `metric` with the named groups as labels."""

    pattern: re.Pattern[str]
    metric: str
    kind: str  # "counter", "gauge" or "timer"
    labels: tuple[str, ...]
    help: str


def _mapping(pattern: str, metric: str, kind: str, labels: Sequence[str], text: str) -> Mapping:
    return Mapping(re.compile(pattern), metric, kind, tuple(labels), text)


DAGRUN = ("dag_id", "state")
TASK = ("dag_id", "task_id")
MAPPINGS: tuple[Mapping, ...] = (
    _mapping(
        r"^dagrun\.duration\.(?P<state>success|failed)\.(?P<dag_id>[^.]+)$",
        "airflow_dagrun_duration_seconds",
        "timer",
        DAGRUN,
        "Duration of finished DAG runs, by DAG and final state.",
    ),
    _mapping(
        r"^dagrun\.duration\.(?P<state>success|failed)$",
        "airflow_dagrun_duration_seconds",
        "timer",
        DAGRUN,
        "Duration of finished DAG runs, by DAG and final state.",
    ),
    _mapping(
        r"^dag\.(?P<dag_id>[^.]+)\.(?P<task_id>[^.]+)\.duration$",
        "airflow_task_duration_seconds",
        "timer",
        TASK,
        "Duration of task runs, by DAG and task.",
    ),
    _mapping(
        r"^task\.duration$",
        "airflow_task_duration_seconds",
        "timer",
        TASK,
        "Duration of task runs, by DAG and task.",
    ),
    _mapping(
        r"^ti\.finish\.(?P<dag_id>[^.]+)\.(?P<task_id>[^.]+)\.(?P<state>[^.]+)$",
        "airflow_task_finished_total",
        "counter",
        (*TASK, "state"),
        "Finished task instances, by DAG, task and state.",
    ),
    _mapping(
        r"^ti\.finish$",
        "airflow_task_finished_total",
        "counter",
        (*TASK, "state"),
        "Finished task instances, by DAG, task and state.",
    ),
    _mapping(
        r"^scheduler_heartbeat$",
        "airflow_scheduler_heartbeat_total",
        "counter",
        (),
        "Scheduler heartbeats.",
    ),
    _mapping(r"^ti_failures$", "airflow_task_failures_total", "counter", (), "Task failures."),
    _mapping(r"^ti_successes$", "airflow_task_successes_total", "counter", (), "Task successes."),
    _mapping(
        r"^dag_processing\.import_errors$",
        "airflow_dag_import_errors",
        "gauge",
        (),
        "DAG files that failed to import.",
    ),
)


@dataclass(frozen=True)
class StatsdSample:
    name: str
    value: float
    kind: str  # c, g, ms, h, s
    tags: dict[str, str]
    delta: bool = False


def parse_line(line: str) -> StatsdSample | None:
    """One StatsD line `name:value|type[|@rate][|#k:v,...]`; None when malformed."""
    name, sep, rest = line.strip().partition(":")
    if not sep or not name:
        return None
    parts = rest.split("|")
    if len(parts) < 2:
        return None
    raw, kind = parts[0], parts[1]
    rate, tags = 1.0, {}
    for extra in parts[2:]:
        if extra.startswith("@"):
            try:
                rate = float(extra[1:]) or 1.0
            except ValueError:
                return None
        elif extra.startswith("#"):
            for tag in extra[1:].split(","):
                key, _, value = tag.partition(":")
                if key:
                    tags[key] = value
    try:
        number = float(raw)
    except ValueError:
        return None
    if kind == "c":
        number /= rate
    return StatsdSample(name, number, kind, tags, delta=kind == "g" and raw[:1] in "+-")


def _sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name).strip("_")


class StatsdTranslator:
    """Keeps the Prometheus metrics and applies each StatsD sample to them."""

    def __init__(self, registry: CollectorRegistry, prefix: str = PREFIX) -> None:
        self.registry = registry
        self.prefix = prefix + "."
        self._metrics: dict[str, tuple[object, str, tuple[str, ...]]] = {}
        self._lock = threading.Lock()
        self._said_full = False

    def _metric(self, name: str, kind: str, labels: tuple[str, ...], text: str) -> Any | None:
        known = self._metrics.get(name)
        if known is not None:
            return known[0] if known[1] == kind and known[2] == labels else None
        if len(self._metrics) >= MAX_METRICS:
            if not self._said_full:
                log.warning("%d metrics exported: ignoring new names like %s", MAX_METRICS, name)
                self._said_full = True
            return None
        metric: object
        base = name.removesuffix("_total")
        if kind == "counter":
            metric = Counter(base, text, labels, registry=self.registry)
        elif kind == "gauge":
            metric = Gauge(name, text, labels, registry=self.registry)
        else:
            metric = Histogram(name, text, labels, buckets=DURATION_BUCKETS, registry=self.registry)
        self._metrics[name] = (metric, kind, labels)
        return metric

    def seed_dag(self, dag_id: str) -> None:
        """Create the DAG's run-duration series at zero (see the module docstring)."""
        mapping = MAPPINGS[0]
        with self._lock:
            metric = self._metric(mapping.metric, mapping.kind, mapping.labels, mapping.help)
            if metric is None:
                return
            for state in ("success", "failed"):
                metric.labels(dag_id=dag_id, state=state)

    def apply(self, sample: StatsdSample) -> bool:
        """Record one sample; False when it is dropped (unknown shape or missing tags)."""
        name = sample.name.removeprefix(self.prefix)
        kind = {"c": "counter", "g": "gauge", "ms": "timer", "h": "timer"}.get(sample.kind)
        if kind is None:
            return False
        target = next((m for m in MAPPINGS if m.pattern.match(name)), None)
        if target is not None:
            found = target.pattern.match(name)
            assert found is not None
            values = {**sample.tags, **found.groupdict()}
            if any(not values.get(label) for label in target.labels):
                return False
            metric_name, labels, text = target.metric, target.labels, target.help
            label_values = {label: str(values[label]) for label in labels}
            kind = target.kind
        else:
            suffix = {"counter": "_total", "timer": "_seconds", "gauge": ""}[kind]
            metric_name = f"{PREFIX}_{_sanitize(name)}{suffix}"
            labels, label_values, text = (), {}, f"Airflow StatsD metric {name}."
        with self._lock:
            metric = self._metric(metric_name, kind, labels, text)
            if metric is None:
                return False
            child = metric.labels(**label_values) if labels else metric
            if kind == "counter":
                child.inc(max(sample.value, 0.0))
            elif kind == "gauge":
                child.inc(sample.value) if sample.delta else child.set(sample.value)
            else:
                child.observe(sample.value / 1000.0)
        return True

    def apply_packet(self, packet: bytes) -> int:
        """Apply every line of one datagram; the number recorded."""
        recorded = 0
        for line in packet.decode("utf-8", errors="replace").splitlines():
            sample = parse_line(line)
            if sample is not None and self.apply(sample):
                recorded += 1
        return recorded


def serve_udp(translator: StatsdTranslator, host: str, port: int, stop: threading.Event) -> None:
    """Receive StatsD datagrams until `stop` is set."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, port))
        sock.settimeout(0.5)
        while not stop.is_set():
            try:
                packet, _ = sock.recvfrom(65535)
            except TimeoutError:
                continue
            translator.apply_packet(packet)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address of both listeners")
    parser.add_argument("--statsd-port", type=int, default=9125, help="UDP port Airflow sends to")
    parser.add_argument("--web-port", type=int, default=9102, help="HTTP port of /metrics")
    parser.add_argument("--prefix", default=PREFIX, help="Airflow's metrics.statsd_prefix")
    parser.add_argument(
        "--seed-dag", action="append", default=[], help="DAG id whose run series start at 0"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    registry = CollectorRegistry()
    translator = StatsdTranslator(registry, prefix=args.prefix)
    for dag_id in args.seed_dag:
        translator.seed_dag(dag_id)
    start_http_server(args.web_port, addr=args.host, registry=registry)
    log.info(
        "StatsD on udp://%s:%d, metrics on http://%s:%d/metrics",
        args.host,
        args.statsd_port,
        args.host,
        args.web_port,
    )
    stop = threading.Event()
    try:
        serve_udp(translator, args.host, args.statsd_port, stop)
    except KeyboardInterrupt:
        stop.set()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
