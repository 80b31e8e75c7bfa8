"""Session helper: local masters get few shuffle partitions; workers get this interpreter."""

from __future__ import annotations

import os
import sys

import pytest

from jobs.spark.session import build_session, local_cores, shuffle_partitions_for


@pytest.mark.parametrize(
    ("master", "cores"),
    [("local", 1), ("local[3]", 3), ("local[2,4]", 2), ("local[*]", os.cpu_count())],
)
def test_local_masters_report_their_cores(master, cores) -> None:
    assert local_cores(master) == cores
    assert shuffle_partitions_for(master) == max(2, 2 * cores)


@pytest.mark.parametrize("master", ["spark://host:7077", "yarn", "k8s://https://api:6443"])
def test_cluster_masters_keep_spark_defaults(master) -> None:
    assert local_cores(master) is None
    assert shuffle_partitions_for(master) is None


@pytest.mark.spark
def test_active_session_is_reused_and_workers_get_this_python(spark, monkeypatch) -> None:
    monkeypatch.delenv("PYSPARK_PYTHON", raising=False)
    partitions = spark.conf.get("spark.sql.shuffle.partitions")
    session = build_session("another-job", master="local[1]")
    assert session is spark
    assert os.environ["PYSPARK_PYTHON"] == sys.executable
    assert spark.conf.get("spark.sql.shuffle.partitions") == partitions
