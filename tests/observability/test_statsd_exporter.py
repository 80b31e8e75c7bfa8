"""Airflow's StatsD output becomes Prometheus metrics the alert rules query."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from monitoring.statsd_exporter import MAX_METRICS, StatsdTranslator, parse_line
from tests.observability.tools import REPO_ROOT, free_port, http_get, running, wait_until


def _exposition(translator: StatsdTranslator) -> str:
    return generate_latest(translator.registry).decode()


def test_parse_counter_rate_gauge_delta_timer_and_tags() -> None:
    counter = parse_line("airflow.ti_failures:1|c|@0.5")
    assert counter is not None and counter.value == 2.0
    gauge = parse_line("airflow.pool.open_slots:-3|g")
    assert gauge is not None and gauge.delta and gauge.value == -3
    timer = parse_line("airflow.task.duration:1500|ms|#dag_id:d,task_id:t")
    assert timer is not None and timer.tags == {"dag_id": "d", "task_id": "t"}
    assert parse_line("garbage") is None
    assert parse_line("name:notanumber|c") is None


def test_legacy_and_tagged_names_map_to_one_labelled_metric() -> None:
    translator = StatsdTranslator(CollectorRegistry())
    translator.apply_packet(
        b"airflow.dagrun.duration.failed.training_pipeline:42000|ms\n"
        b"airflow.dagrun.duration.failed:42000|ms\n"  # modern name, no tags: dropped
        b"airflow.task.duration:1500|ms|#dag_id:training_pipeline,task_id:tune\n"
        b"airflow.scheduler_heartbeat:1|c\nairflow.scheduler_heartbeat:1|c\n"
        b"airflow.ti.finish.drift_check.decide.success:1|c\n"
        b"airflow.executor.open_slots:4|g\n"
    )
    text = _exposition(translator)
    assert (
        'airflow_dagrun_duration_seconds_count{dag_id="training_pipeline",state="failed"} 1.0'
        in text
    )
    assert (
        'airflow_dagrun_duration_seconds_sum{dag_id="training_pipeline",state="failed"} 42.0'
        in text
    )
    assert (
        'airflow_task_duration_seconds_count{dag_id="training_pipeline",task_id="tune"} 1.0' in text
    )
    assert "airflow_scheduler_heartbeat_total 2.0" in text
    assert (
        'airflow_task_finished_total{dag_id="drift_check",state="success",task_id="decide"} 1.0'
        in text
    )
    assert "airflow_executor_open_slots 4.0" in text


def test_seeded_dag_series_start_at_zero() -> None:
    translator = StatsdTranslator(CollectorRegistry())
    translator.seed_dag("training_pipeline")
    text = _exposition(translator)
    assert (
        'airflow_dagrun_duration_seconds_count{dag_id="training_pipeline",state="failed"} 0.0'
        in text
    )


def test_unmapped_names_are_capped() -> None:
    translator = StatsdTranslator(CollectorRegistry())
    packet = "\n".join(f"airflow.custom_{i}:1|c" for i in range(MAX_METRICS + 20)).encode()
    assert translator.apply_packet(packet) == MAX_METRICS


AIRFLOW_EMITS = """
from datetime import timedelta
from airflow.configuration import conf
from airflow.observability import stats
from airflow.observability.metrics import stats_utils

stats.initialize(
    factory=stats_utils.get_stats_factory(),
    export_legacy_names=conf.getboolean("metrics", "legacy_names_on"),
)
# What the scheduler, a failed DAG run and a finished task send.
stats.incr("scheduler_heartbeat", 1, 1)
stats.incr("scheduler_heartbeat", 1, 1)
stats.timing("dagrun.duration.failed", dt=timedelta(seconds=42), tags={"dag_id": "training_pipeline"})
stats.timing("task.duration", 1500.0, tags={"dag_id": "training_pipeline", "task_id": "tune"})
"""


def test_airflows_own_statsd_client_reaches_prometheus_format(tmp_path: Path) -> None:
    statsd_port, web_port = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "monitoring.statsd_exporter",
        f"--statsd-port={statsd_port}",
        f"--web-port={web_port}",
    ]
    metrics_url = f"http://127.0.0.1:{web_port}/metrics"
    env = {
        **os.environ,
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(statsd_port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
    }
    with running(command, metrics_url, tmp_path / "exporter.log"):
        subprocess.run(
            [sys.executable, "-c", AIRFLOW_EMITS], env=env, cwd=REPO_ROOT, check=True, timeout=120
        )

        def arrived() -> bool:
            return "airflow_scheduler_heartbeat_total 2.0" in http_get(metrics_url)

        wait_until(arrived, "the heartbeats at the exporter", timeout=20)
        text = http_get(metrics_url)
    failed = re.search(
        r'^airflow_dagrun_duration_seconds_count\{dag_id="training_pipeline",state="failed"\} (\S+)$',
        text,
        flags=re.MULTILINE,
    )
    assert failed and float(failed.group(1)) == 1.0
    assert (
        'airflow_task_duration_seconds_count{dag_id="training_pipeline",task_id="tune"} 1.0' in text
    )
