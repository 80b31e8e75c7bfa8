"""Fixtures shared by every test folder.

Each test session gets its own DRIFTLOOP_HOME and MLflow store under a temp
folder, so tests never touch a developer's `.driftloop/` demo state.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

# Airflow reads its configuration once, at first import: point it at a
# throw-away home and this repo's DAG folder before any test imports it.
# Idempotent: importing this module twice (as `conftest` and `tests.conftest`)
# must not move Airflow's home mid-session.
if "DRIFTLOOP_TEST_AIRFLOW_HOME" not in os.environ:
    os.environ["DRIFTLOOP_TEST_AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="driftloop-airflow-")
_AIRFLOW_HOME = Path(os.environ["DRIFTLOOP_TEST_AIRFLOW_HOME"])
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO_ROOT / "airflow" / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"


from tests.helpers import datasets_dir, real_dataset  # noqa: E402,F401  (re-exported)


@pytest.fixture(scope="session")
def driftloop_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("driftloop_home")
    os.environ["DRIFTLOOP_HOME"] = str(home)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    (home / "mlflow").mkdir(parents=True, exist_ok=True)
    return home


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the whole test run (start-up costs ~10 s)."""
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("driftloop-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        # Small test inputs: the JVM's quick compiler tier halves start-up CPU.
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1")
        .getOrCreate()
    )
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata DB (SQLite) for dag.test(); ~10 s once per session."""
    env = dict(
        os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        check=True,
        env=env,
        capture_output=True,
    )
    return _AIRFLOW_HOME


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the embedded stack run last: it starts once and never idles through the rest."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)


@pytest.fixture(scope="session")
def embedded_stack(tmp_path_factory: pytest.TempPathFactory):
    """Airflow standalone + MLflow server + API on spare ports, shared by every e2e test."""
    from tests.stack import start_stack, stop_stack

    stack = start_stack(tmp_path_factory.mktemp("stack-home"))
    try:
        yield stack
    finally:
        print(stop_stack(stack))
