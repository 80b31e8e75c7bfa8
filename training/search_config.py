"""The search's configuration (search.yaml), budgets and the Optuna study storage.

Split from the search itself so the DAG's planning task and the benchmark read a
budget without importing the objective or the MLflow logging.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
import yaml
from sqlalchemy.engine import make_url

from core.settings import get_settings
from core.usecases import DEFAULT_USE_CASE, get_use_case
from training.evaluate import LOWER_IS_BETTER, METRIC_NAMES
from training.zoo import family_space

log = logging.getLogger(__name__)

SEARCH_CONFIG = Path(__file__).with_name("config") / "search.yaml"
STORAGE_ENV = "DRIFTLOOP_OPTUNA_STORAGE"


class SearchConfigError(ValueError):
    """search.yaml holds a value the search cannot use."""


class TuningError(RuntimeError):
    """A study cannot run or produced nothing to select."""


class StudyMismatchError(TuningError):
    """An existing study under this name belongs to another family, metric or dataset."""


# ---- configuration --------------------------------------------------------------------


@dataclass(frozen=True)
class SearchConfig:
    """training/config/search.yaml, checked (see the comments there)."""

    metric: str
    fit_fractions: tuple[float, ...]
    sampler_startup_trials: int
    multivariate: bool
    pruner_startup_trials: int
    pruner_warmup_steps: int
    n_trials: int
    timeout_s: float
    time_shares: dict[str, float]
    sqlite_timeout_s: float
    heartbeat_interval_s: int
    grace_period_s: int
    feature_cache_entries: int
    max_threads: int | None

    @property
    def direction(self) -> Literal["minimize", "maximize"]:
        return "minimize" if self.metric in LOWER_IS_BETTER else "maximize"


def load_search_config(path: str | Path = SEARCH_CONFIG) -> SearchConfig:
    """Read and check search.yaml; errors name the file and the key."""
    path = Path(path)
    data = yaml.safe_load(path.read_text()) or {}
    try:
        budget, sampler, pruner, storage = (
            data["budget"],
            data["sampler"],
            data["pruner"],
            data["storage"],
        )
        config = SearchConfig(
            metric=str(data["metric"]),
            fit_fractions=tuple(float(f) for f in data["fit_fractions"]),
            sampler_startup_trials=int(sampler["n_startup_trials"]),
            multivariate=bool(sampler["multivariate"]),
            pruner_startup_trials=int(pruner["n_startup_trials"]),
            pruner_warmup_steps=int(pruner["n_warmup_steps"]),
            n_trials=int(budget["n_trials"]),
            timeout_s=float(budget["timeout_s"]),
            time_shares={str(k): float(v) for k, v in budget["time_shares"].items()},
            sqlite_timeout_s=float(storage["sqlite_timeout_s"]),
            heartbeat_interval_s=int(storage["heartbeat_interval_s"]),
            grace_period_s=int(storage["grace_period_s"]),
            feature_cache_entries=int(data["feature_cache_entries"]),
            max_threads=None if data["max_threads"] is None else int(data["max_threads"]),
        )
    except (KeyError, TypeError) as exc:
        raise SearchConfigError(f"{path}: missing or malformed key {exc}") from exc
    if config.metric not in METRIC_NAMES:
        raise SearchConfigError(
            f"{path}: metric {config.metric!r} is not one of {list(METRIC_NAMES)}"
        )
    fractions = config.fit_fractions
    if (
        not fractions
        or fractions[-1] != 1.0
        or any(not 0 < f <= 1 for f in fractions)
        or list(fractions) != sorted(set(fractions))
    ):
        raise SearchConfigError(
            f"{path}: fit_fractions must increase strictly within (0, 1] and end at 1.0, "
            f"got {list(fractions)}"
        )
    if config.n_trials < 1 or config.timeout_s <= 0:
        raise SearchConfigError(f"{path}: budget needs n_trials >= 1 and timeout_s > 0")
    if "other" not in config.time_shares or any(v <= 0 for v in config.time_shares.values()):
        raise SearchConfigError(f"{path}: budget.time_shares needs positive shares and `other`")
    return config


def search_config_for(use_case: str = DEFAULT_USE_CASE) -> SearchConfig:
    """The checked search.yaml of a registered use case (its config folder, else the default)."""
    return load_search_config(get_use_case(use_case).config_path("search"))


def default_budget(
    family: str, config: SearchConfig | None = None, *, use_case: str = DEFAULT_USE_CASE
) -> dict[str, Any]:
    """{"n_trials", "timeout_s"} from search.yaml for a family (the DAG's defaults)."""
    family_space(family, use_case=use_case)
    config = config or search_config_for(use_case)
    return {"n_trials": config.n_trials, "timeout_s": config.timeout_s}


def plan_time_budget(
    total_seconds: float, families: Sequence[str], config: SearchConfig | None = None
) -> dict[str, float]:
    """Split a total search time over `families` by budget.time_shares (renormalised)."""
    config = config or load_search_config()
    shares = {f: config.time_shares.get(f, config.time_shares["other"]) for f in families}
    total_share = sum(shares.values())
    return {f: total_seconds * share / total_share for f, share in shares.items()}


# ---- storage --------------------------------------------------------------------------


def storage_url(storage: str | None = None) -> str:
    """`storage`, else env DRIFTLOOP_OPTUNA_STORAGE, else SQLite under the driftloop home."""
    if storage:
        return storage
    if os.environ.get(STORAGE_ENV):
        return os.environ[STORAGE_ENV]
    return f"sqlite:///{get_settings().home / 'optuna' / 'studies.db'}"


def redact(url: str) -> str:
    """The storage URL with any password masked, for logs and run tags."""
    return make_url(url).render_as_string(hide_password=True)


def open_storage(
    storage: str | None = None, config: SearchConfig | None = None
) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage with lock waits (SQLite) and trial heartbeats.

    A heartbeat lets a resumed study mark the trial a killed worker left
    RUNNING as FAIL once it has been silent for the grace period.
    """
    config = config or load_search_config()
    url = storage_url(storage)
    if url.startswith("sqlite:///"):
        db_file = Path(url[len("sqlite:///") :])
        db_file.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": config.sqlite_timeout_s}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    with warnings.catch_warnings(), _schema_lock(url):
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=config.heartbeat_interval_s,
            grace_period=config.grace_period_s,
        )


@contextlib.contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    """Serialise opening a SQLite study database across processes.

    Optuna creates its tables when the storage is opened; parallel `tune` tasks
    (one process per family) opening a new SQLite file at the same moment race
    on that (`table studies already exists`). A lock file beside the database
    makes the first one create the schema and the others find it. Server
    databases handle this themselves, so they take no lock.
    """
    if not url.startswith("sqlite:///"):
        yield
        return
    lock_path = Path(url[len("sqlite:///") :]).with_suffix(".schema-lock")
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
