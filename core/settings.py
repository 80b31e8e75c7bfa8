"""One place for the paths and endpoints every process kind agrees on.

Everything is read from environment variables with embedded defaults, so the
same code runs the one-machine demo (SQLite, local files) and a scaled-out
deployment (Postgres, object store, Spark cluster) by configuration alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


@dataclass(frozen=True)
class Settings:
    """Resolved settings of this process."""

    home: Path
    datasets_dir: Path
    mlflow_tracking_uri: str
    model_name: str
    spark_master: str

    @property
    def lake_dir(self) -> Path:
        """Immutable snapshots, features, quarantines: one folder per run."""
        return self.home / "lake"

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def artifacts_dir(self) -> Path:
        return self.mlflow_dir / "artifacts"


def get_settings() -> Settings:
    """Read the settings now (tests change the environment between calls)."""
    home = _env_path("DRIFTLOOP_HOME", REPO_ROOT / ".driftloop")
    default_tracking = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    return Settings(
        home=home,
        datasets_dir=_env_path(
            "DRIFTLOOP_DATASETS", (REPO_ROOT / ".." / "shared" / "datasets").resolve()
        ),
        mlflow_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", default_tracking),
        model_name=os.environ.get("DRIFTLOOP_MODEL_NAME", "review-sentiment"),
        spark_master=os.environ.get("SPARK_MASTER", "local[*]"),
    )
