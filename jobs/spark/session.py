"""One way to build the SparkSession every driftloop job uses.

The settings (`SPARK_MASTER`) pick local or cluster mode, so the same job runs on a laptop and on
a cluster without a code change. A local session gets few shuffle partitions (the default 200
turns a 5k-row job into 200 tiny tasks) unless `--conf` set them, and the UI stays off unless
`SPARK_UI=1`, so tests and demos do not open ports.
"""

from __future__ import annotations

import logging
import os
import re
import sys

from pyspark.sql import SparkSession

from core.settings import get_settings

logger = logging.getLogger(__name__)

_LOCAL_MASTER = re.compile(r"^local(?:\[(?P<cores>\*|\d+)(?:,\s*\d+)?\])?$")


def local_cores(master: str) -> int | None:
    """Cores a `local`, `local[N]`, `local[*]` or `local[N,F]` master uses; None for a cluster."""
    match = _LOCAL_MASTER.match(master.strip())
    if match is None:
        return None
    cores = match.group("cores")
    if cores is None:
        return 1
    if cores == "*":
        return os.cpu_count() or 1
    return max(1, int(cores))


def shuffle_partitions_for(master: str) -> int | None:
    """Shuffle partitions for a local master (two per core, at least 2); None keeps the default."""
    cores = local_cores(master)
    return None if cores is None else max(2, 2 * cores)


def _submitted_by_spark_submit() -> bool:
    # spark-submit starts the JVM first and hands its gateway to Python through this variable.
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_session(app_name: str, master: str | None = None) -> SparkSession:
    """The job's SparkSession; an already active session is returned unchanged.

    `master` defaults to `SPARK_MASTER` from the settings, except under `spark-submit`, whose
    `--master` then wins. Python workers are pointed at this interpreter when `PYSPARK_PYTHON`
    is unset: otherwise Spark starts `python3` from PATH, which lacks pandas and pyarrow.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    active = SparkSession.getActiveSession()
    if active is not None:
        logger.info("reusing the active Spark session (master %s)", active.sparkContext.master)
        return active

    builder = (
        SparkSession.builder.appName(app_name)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "true" if os.environ.get("SPARK_UI") == "1" else "false")
        .config("spark.ui.showConsoleProgress", "false")
    )
    if master is None and not _submitted_by_spark_submit():
        master = get_settings().spark_master
    if master is not None:
        builder = builder.master(master)

    session = builder.getOrCreate()
    actual_master = session.sparkContext.master or ""
    partitions = shuffle_partitions_for(actual_master)
    explicit = session.sparkContext.getConf().contains("spark.sql.shuffle.partitions")
    if partitions is not None and not explicit:
        session.conf.set("spark.sql.shuffle.partitions", str(partitions))
    session.sparkContext.setLogLevel(os.environ.get("SPARK_LOG_LEVEL", "WARN"))
    logger.info("Spark session %r started on %s", app_name, actual_master)
    return session
