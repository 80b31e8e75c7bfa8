"""Model search: one Optuna study per model family, every trial visible in MLflow.

The training DAG fans out one `tune_family` task per family (separate
processes, possibly separate machines), then `select_best` picks the winner
from their small result dicts and `refit_best` fits it on train + valid and
logs the model run that `evaluate_run` and `register_and_gate` take over.
`start_parent_run` / `end_parent_run` give all of those one MLflow parent run.

Why it can be trusted:

- Studies live in an RDB (SQLite under the driftloop home, or Postgres via
  DRIFTLOOP_OPTUNA_STORAGE) and are opened with `load_if_exists`: a retried
  task resumes its study, and the trial budget counts trials already finished,
  so a crash costs only the trial that was running.
- Every trial is scored on the valid split, never on test; its value is a
  full-train fit. Before that it passes through cheaper rungs (a seeded share
  of train, `fit_fractions` in search.yaml) where the median pruner may stop it.
- The first trial of a new study is the family's defaults, so the search never
  reports less than a sound hand-picked configuration.
- Seeds everywhere (sampler, subsamples, estimators): the same data, config
  and seed give the same trials and the same best value.
- Each family's child run carries every trial's parameters, rung scores and
  state (`trials/trials.csv`), the optimisation history, rung curves and
  parameter importances (`plots/`), and the best trial's valid metrics.

The text representation (vectorisers, SVD, scalers) needs no labels, so it is
fitted once per distinct configuration on all train rows and kept in a small
in-process cache; only the supervised head is refitted per rung. That is the
same model a plain `Pipeline.fit` would produce, computed without re-reading
the corpus for every trial.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import joblib
import matplotlib.pyplot as plt
import mlflow
import numpy as np
import optuna
import pandas as pd
import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from sklearn.base import clone
from sqlalchemy.engine import make_url
from threadpoolctl import threadpool_limits

from core.settings import get_settings
from training import mlflow_utils
from training.data import feature_frame, folder_sha256, labels, load_features, split_frames
from training.evaluate import LOWER_IS_BETTER, METRIC_NAMES, compute_metrics
from training.train import lineage_tags, log_fitted_model
from training.zoo import FEATURES_STEP, build_pipeline, family_names, family_space, to_servable

log = logging.getLogger(__name__)

SEARCH_CONFIG = Path(__file__).with_name("config") / "search.yaml"
STORAGE_ENV = "DRIFTLOOP_OPTUNA_STORAGE"
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
# Recoverable per-trial failures (a parameter combination an estimator rejects,
# a numerical breakdown): the trial is recorded as FAIL and the study goes on.
TRIAL_ERRORS: tuple[type[Exception], ...] = (ValueError, ArithmeticError)
SERVABLE_SAMPLE_ROWS = 200


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
    def direction(self) -> str:
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


def default_budget(family: str, config: SearchConfig | None = None) -> dict[str, Any]:
    """{"n_trials", "timeout_s"} from search.yaml for a family (the DAG's defaults)."""
    family_space(family)
    config = config or load_search_config()
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=config.heartbeat_interval_s,
            grace_period=config.grace_period_s,
        )


# ---- data and the objective -----------------------------------------------------------


@dataclass(frozen=True)
class SearchData:
    """Train rows to fit on and valid rows to score on, plus the folder's hash."""

    x_train: pd.DataFrame
    y_train: np.ndarray
    x_valid: pd.DataFrame
    y_valid: np.ndarray
    sha256: str


def load_search_data(features_dir: str) -> SearchData:
    """The train and valid splits of a feature folder; each must hold both classes."""
    train, valid, _ = split_frames(load_features(features_dir))
    for name, part in (("train", train), ("valid", valid)):
        if labels(part).nunique() < 2:
            raise TuningError(
                f"the {name} split of {features_dir} holds only label "
                f"{labels(part).iloc[0]}; a search needs both classes in train and valid"
            )
    return SearchData(
        x_train=feature_frame(train),
        y_train=labels(train).to_numpy(),
        x_valid=feature_frame(valid),
        y_valid=labels(valid).to_numpy(),
        sha256=folder_sha256(features_dir),
    )


_FEATURE_CACHE: OrderedDict[str, tuple[Any, Any]] = OrderedDict()


def clear_feature_cache() -> None:
    """Drop every cached text representation (frees memory between searches)."""
    _FEATURE_CACHE.clear()


def _represent(features: Any, data: SearchData, max_entries: int) -> tuple[Any, Any]:
    """(train matrix, valid matrix) of the unfitted `features` step, fitted on train.

    Fitted without labels (`fit(X)`): a family that put a supervised step in
    its features step would fail here rather than leak the labels.
    """
    key = joblib.hash((data.sha256, features))
    if key in _FEATURE_CACHE:
        _FEATURE_CACHE.move_to_end(key)
        return _FEATURE_CACHE[key]
    fitted = clone(features)
    matrices = (fitted.fit_transform(data.x_train), fitted.transform(data.x_valid))
    if max_entries > 0:
        _FEATURE_CACHE[key] = matrices
        while len(_FEATURE_CACHE) > max_entries:
            _FEATURE_CACHE.popitem(last=False)
    return matrices


def predicted_fit_seconds(rung_seconds: float, rung_fraction: float, fraction: float) -> float:
    """Time a fit on `fraction` of train is expected to take, from a rung on a smaller share.

    Linear in the number of rows: right for the linear families, optimistic
    for the trees, which is the safe side (it only ever lets a trial run).
    """
    return rung_seconds * fraction / rung_fraction


def make_objective(
    family: str,
    data: SearchData,
    config: SearchConfig,
    seed: int,
    deadline: float | None = None,
) -> Callable[[optuna.Trial], float]:
    """The objective of one family's study (see the module docstring for the rungs).

    `deadline` (time.monotonic()) bounds the attempt: once the study has a
    complete trial, a trial whose next rung is predicted to end after it is
    stopped (PRUNED, user attr `stopped_for_time`) instead of overrunning.
    Without a binding deadline the objective is deterministic.
    """
    space = family_space(family)
    order = np.random.default_rng(seed).permutation(len(data.y_train))
    last = len(config.fit_fractions) - 1

    def objective(trial: optuna.Trial) -> float:
        pipeline = build_pipeline(family, space.suggest(trial), seed=seed)
        x_train, x_valid = _represent(
            pipeline.named_steps[FEATURES_STEP], data, config.feature_cache_entries
        )
        head = pipeline[1:]
        started = time.perf_counter()
        metrics: dict[str, float] = {}
        previous: tuple[float, float] | None = None  # (seconds, fraction) of the last rung
        for step, fraction in enumerate(config.fit_fractions):
            if deadline is not None and previous is not None:
                expected = predicted_fit_seconds(previous[0], previous[1], fraction)
                has_complete = bool(
                    trial.study.get_trials(
                        deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)
                    )
                )
                if has_complete and time.monotonic() + expected > deadline:
                    trial.set_user_attr("stopped_for_time", True)
                    raise optuna.TrialPruned(
                        f"rung {fraction} would take ~{expected:.0f} s, past the time budget"
                    )
            rung_started = time.perf_counter()
            if fraction < 1.0:
                rows = np.sort(order[: max(2, math.ceil(fraction * len(order)))])
                if len(np.unique(data.y_train[rows])) < 2:
                    continue  # too few rows for both classes: no estimate at this rung
                model = clone(head).fit(x_train[rows], data.y_train[rows])
            else:
                model = clone(head).fit(x_train, data.y_train)
            proba = np.asarray(model.predict_proba(x_valid))[:, 1]
            previous = (time.perf_counter() - rung_started, fraction)
            metrics = compute_metrics(data.y_valid, proba)
            trial.report(metrics[config.metric], step)
            if step < last and trial.should_prune():
                raise optuna.TrialPruned(
                    f"valid {config.metric} {metrics[config.metric]:.4f} at rung {fraction} "
                    "is below the median of earlier trials"
                )
        trial.set_user_attr("valid_metrics", metrics)
        trial.set_user_attr("head_fit_seconds", round(time.perf_counter() - started, 3))
        return metrics[config.metric]

    return objective


# ---- callbacks ------------------------------------------------------------------------


class _LogTrialToRun:
    """Per-trial metrics on the family's child run, so progress shows while it runs."""

    def __init__(self, run_id: str, metric: str) -> None:
        self.run_id = run_id
        self.metric = metric

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        now = int(time.time() * 1000)
        batch: list[Metric] = []
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.value is not None:
            batch.append(Metric(f"trial_{self.metric}", float(trial.value), now, trial.number))
            batch.append(Metric(f"best_{self.metric}", float(study.best_value), now, trial.number))
        elif trial.state == optuna.trial.TrialState.PRUNED and trial.intermediate_values:
            last = trial.intermediate_values[max(trial.intermediate_values)]
            batch.append(Metric(f"pruned_{self.metric}", float(last), now, trial.number))
        if batch:
            mlflow_utils.client().log_batch(self.run_id, metrics=batch)


class _StopWhenOutOfTime:
    """Stop the study when the median complete-trial duration no longer fits the budget.

    Optuna's own timeout is only checked after a trial ends, so a long trial
    started just before the deadline would overrun it by its whole duration.
    The median, not the mean: the first trial of a text representation also
    pays for vectorising the corpus, the trials that reuse it do not.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.durations: list[float] = []

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.duration is not None:
            self.durations.append(trial.duration.total_seconds())
        if self.durations and time.monotonic() + float(np.median(self.durations)) > self.deadline:
            study.stop()


# ---- MLflow runs ----------------------------------------------------------------------


def start_parent_run(
    run_name: str, experiment: str = "training", tags: dict[str, Any] | None = None
) -> str:
    """Create a RUNNING parent run that tasks in other processes nest under; returns its id."""
    mlflow_utils.configure()
    experiment_id = mlflow_utils.get_or_create_experiment(experiment)
    run = mlflow_utils.client().create_run(
        experiment_id,
        run_name=run_name,
        tags={"driftloop.run_kind": "search", **{k: str(v) for k, v in (tags or {}).items()}},
    )
    return run.info.run_id


def end_parent_run(run_id: str, status: str = "FINISHED") -> None:
    """Close a run made by start_parent_run with FINISHED, FAILED or KILLED."""
    allowed = ("FINISHED", "FAILED", "KILLED")
    if status not in allowed:
        raise ValueError(f"status must be one of {allowed}, got {status!r}")
    mlflow_utils.configure()
    mlflow_utils.client().set_terminated(run_id, status=status)


def _experiment_for(parent_run_id: str | None, experiment: str) -> str:
    if parent_run_id:
        return mlflow_utils.client().get_run(parent_run_id).info.experiment_id
    return mlflow_utils.get_or_create_experiment(experiment)


def _resumable_run(run_id: str | None, parent_run_id: str | None) -> bool:
    if not run_id:
        return False
    try:
        run = mlflow_utils.client().get_run(run_id)
    except MlflowException:
        return False
    return (
        run.info.lifecycle_stage == "active"
        and run.data.tags.get(MLFLOW_PARENT_RUN_ID) == parent_run_id
    )


def _child_run(
    study: optuna.Study,
    family: str,
    parent_run_id: str | None,
    experiment: str,
    params: dict[str, Any],
) -> tuple[str, bool]:
    """(run id, resumed): the study's earlier child run when it can be reopened, else a new one."""
    mlflow_client = mlflow_utils.client()
    previous = study.user_attrs.get("mlflow_run_id")
    if _resumable_run(previous, parent_run_id):
        mlflow_client.update_run(previous, status="RUNNING")
        return previous, True
    tags = {"driftloop.run_kind": "tune", "model_family": family}
    if parent_run_id:
        tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    run = mlflow_client.create_run(
        _experiment_for(parent_run_id, experiment), run_name=f"tune-{family}", tags=tags
    )
    run_id = run.info.run_id
    mlflow_client.log_batch(run_id, params=[Param(k, str(v)[:500]) for k, v in params.items()])
    study.set_user_attr("mlflow_run_id", run_id)
    return run_id, False


def trials_table(study: optuna.Study, fit_fractions: Sequence[float]) -> pd.DataFrame:
    """One row per trial: number, state, value, duration, params, rung scores, valid metrics."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {
            "number": trial.number,
            "state": trial.state.name,
            "value": trial.value,
            "duration_s": trial.duration.total_seconds() if trial.duration else None,
            "source": trial.user_attrs.get("source", "sampler"),
            "stopped_for_time": bool(trial.user_attrs.get("stopped_for_time", False)),
        }
        row.update({f"param.{k}": v for k, v in trial.params.items()})
        for step, value in sorted(trial.intermediate_values.items()):
            fraction = fit_fractions[step] if step < len(fit_fractions) else step
            row[f"rung.{fraction}"] = value
        row.update({f"valid.{k}": v for k, v in trial.user_attrs.get("valid_metrics", {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def _param_importances(study: optuna.Study, seed: int) -> dict[str, float]:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    try:
        return {
            k: float(v)
            for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()
        }
    except (ValueError, RuntimeError) as exc:
        # e.g. every complete trial has the same parameters: nothing to attribute.
        log.warning("parameter importances unavailable for %s: %s", study.study_name, exc)
        return {}


def _save_plots(
    study: optuna.Study, importances: dict[str, float], folder: Path, metric: str
) -> list[Path]:
    paths: list[Path] = []
    # Optuna's plots switch matplotlib to its own style; keep that inside this block.
    with warnings.catch_warnings(), plt.style.context("ggplot"):
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name, plot in (
            ("optimization_history", optuna.visualization.matplotlib.plot_optimization_history),
            ("rungs", optuna.visualization.matplotlib.plot_intermediate_values),
        ):
            try:
                ax = plot(study)
            except (ValueError, RuntimeError) as exc:
                log.warning("plot %s unavailable for %s: %s", name, study.study_name, exc)
                continue
            ax.set_ylabel(f"valid {metric}")
            fig = ax.figure
            fig.set_size_inches(9, 5)
            paths.append(folder / f"{name}.png")
            fig.savefig(paths[-1], dpi=90, bbox_inches="tight")  # the legend sits outside
            plt.close(fig)
    if importances:
        names = list(importances)[::-1]
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.5))
        ax.barh(names, [importances[n] for n in names])
        ax.set_xlabel(f"fANOVA importance for valid {metric}")
        ax.set_title(f"{study.study_name}: parameter importances")
        fig.tight_layout()
        paths.append(folder / "param_importances.png")
        fig.savefig(paths[-1], dpi=90)
        plt.close(fig)
    return paths


def _log_study(
    run_id: str,
    study: optuna.Study,
    config: SearchConfig,
    seed: int,
    counts: dict[str, int],
) -> None:
    mlflow_client = mlflow_utils.client()
    importances = _param_importances(study, seed)
    table = trials_table(study, config.fit_fractions)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        table.to_csv(folder / "trials.csv", index=False)
        mlflow_client.log_artifact(run_id, str(folder / "trials.csv"), artifact_path="trials")
        mlflow_client.log_dict(
            run_id, json.loads(table.to_json(orient="records")), "trials/trials.json"
        )
        mlflow_client.log_dict(run_id, importances, "plots/param_importances.json")
        for path in _save_plots(study, importances, folder, config.metric):
            mlflow_client.log_artifact(run_id, str(path), artifact_path="plots")
    now = int(time.time() * 1000)
    metrics = [Metric(f"n_{k}", float(v), now, 0) for k, v in counts.items()]
    tags: list[RunTag] = []
    if counts["complete"]:
        best = study.best_trial
        metrics.append(Metric(f"best_valid_{config.metric}", float(best.value), now, 0))
        metrics += [
            Metric(f"best_valid_{k}", float(v), now, 0)
            for k, v in best.user_attrs.get("valid_metrics", {}).items()
            if isinstance(v, int | float) and math.isfinite(v)
        ]
        tags.append(RunTag("best_trial", str(best.number)))
        tags += [RunTag(f"best.{k}", str(v)) for k, v in best.params.items()]
    mlflow_client.log_batch(run_id, metrics=metrics, tags=tags)


# ---- public API -----------------------------------------------------------------------


def _state_counts(study: optuna.Study) -> dict[str, int]:
    states = [t.state for t in study.get_trials(deepcopy=False)]
    state = optuna.trial.TrialState
    return {
        "complete": states.count(state.COMPLETE),
        "pruned": states.count(state.PRUNED),
        "failed": states.count(state.FAIL),
    }


def _check_study(study: optuna.Study, expected: dict[str, str], direction: str) -> None:
    if study.direction.name.lower() != direction:
        raise StudyMismatchError(
            f"study {study.study_name!r} is set to {study.direction.name.lower()}, "
            f"but metric needs {direction}; choose another study_name"
        )
    for key, value in expected.items():
        found = study.user_attrs.get(key)
        if found is None:
            study.set_user_attr(key, value)
        elif found != value:
            raise StudyMismatchError(
                f"study {study.study_name!r} was created with {key}={found!r}, not {value!r}; "
                "a study resumes only the same family, metric and data: choose another study_name"
            )


def tune_family(
    family: str,
    features_dir: str,
    *,
    n_trials: int,
    timeout_s: float,
    study_name: str,
    storage: str | None = None,
    parent_run_id: str | None = None,
    seed: int = 0,
    experiment: str = "training",
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = (),
    config: SearchConfig | None = None,
) -> dict[str, Any]:
    """Run (or resume) the study of one family until it holds `n_trials` finished trials.

    Finished = complete or pruned; trials finished by an earlier attempt count,
    so a retried task only runs what is missing. `timeout_s` bounds this attempt:
    no trial starts, and no full-train rung runs, when it is not expected to
    end in time (once the study has one complete trial).
    Logs a child run `tune-<family>` under `parent_run_id` (reopened when the
    study is resumed under the same parent). `callbacks` are passed to Optuna
    after the built-in ones. Returns a JSON-able dict (see the keys below).
    """
    config = config or load_search_config()
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    space = family_space(family)
    data = load_search_data(features_dir)
    url = storage_url(storage)
    optuna_storage = open_storage(url, config)
    study = optuna.create_study(
        study_name=study_name,
        storage=optuna_storage,
        direction=config.direction,
        load_if_exists=True,
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=config.pruner_startup_trials,
            n_warmup_steps=config.pruner_warmup_steps,
        ),
    )
    _check_study(
        study,
        {"family": family, "metric": config.metric, "data_sha256": data.sha256, "seed": str(seed)},
        config.direction,
    )
    existing = len(study.trials)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Offset by the trials already there: a resumed study must not replay
        # the random start-up samples of the first attempt.
        study.sampler = optuna.samplers.TPESampler(
            seed=seed + existing,
            n_startup_trials=config.sampler_startup_trials,
            multivariate=config.multivariate,
        )
    if existing == 0:
        study.enqueue_trial(
            {name: space.defaults[name] for name in space.search},
            user_attrs={"source": "defaults"},
        )

    mlflow_utils.configure()
    run_id, resumed = _child_run(
        study,
        family,
        parent_run_id,
        experiment,
        {
            "family": family,
            "study_name": study_name,
            "metric": config.metric,
            "direction": config.direction,
            "seed": seed,
            "fit_fractions": list(config.fit_fractions),
            "n_train": len(data.y_train),
            "n_valid": len(data.y_valid),
        },
    )
    attempts = int(study.user_attrs.get("attempts", 0)) + 1
    study.set_user_attr("attempts", attempts)
    mlflow_utils.set_run_tags(
        run_id,
        {
            **lineage_tags(features_dir, None, family),
            "study_name": study_name,
            "optuna_storage": redact(url),
            "budget.n_trials": n_trials,
            "budget.timeout_s": timeout_s,
            "attempts": attempts,
            "summary": space.summary,
        },
    )
    mlflow_utils.client().log_dict(
        run_id,
        {"defaults": space.defaults, "search": {k: vars(v) for k, v in space.search.items()}},
        "search_space.json",
    )

    started = time.monotonic()
    deadline = started + timeout_s
    finished_before = sum(_state_counts(study)[k] for k in ("complete", "pruned"))
    remaining = n_trials - finished_before
    log.info(
        "study %s (%s): %d trials finished before, %d to run, %.0f s budget%s",
        study_name,
        family,
        finished_before,
        max(remaining, 0),
        timeout_s,
        " (resumed)" if resumed or finished_before else "",
    )
    try:
        if remaining > 0:
            with threadpool_limits(limits=config.max_threads):
                study.optimize(
                    make_objective(family, data, config, seed, deadline),
                    n_trials=remaining,
                    timeout=timeout_s,
                    catch=TRIAL_ERRORS,
                    callbacks=[
                        optuna.study.MaxTrialsCallback(n_trials, states=FINISHED),
                        _LogTrialToRun(run_id, config.metric),
                        _StopWhenOutOfTime(deadline),
                        *callbacks,
                    ],
                    gc_after_trial=True,
                )
        counts = _state_counts(study)
        _log_study(run_id, study, config, seed, counts)
        if counts["complete"] == 0:
            raise TuningError(_nothing_complete(study, counts))
    except BaseException:
        mlflow_utils.client().set_terminated(run_id, status="FAILED")
        raise
    mlflow_utils.client().set_terminated(run_id, status="FINISHED")

    best = study.best_trial
    result = {
        "family": family,
        "study_name": study_name,
        "metric": config.metric,
        "best_value": float(best.value),
        "best_params": dict(best.params),
        "best_trial": best.number,
        "valid_metrics": dict(best.user_attrs.get("valid_metrics", {})),
        "n_trials": counts["complete"] + counts["pruned"] + counts["failed"],
        "n_complete": counts["complete"],
        "n_pruned": counts["pruned"],
        "n_failed": counts["failed"],
        "child_run_id": run_id,
        "seed": seed,
        "summary": space.summary,
        "elapsed_s": round(time.monotonic() - started, 3),
    }
    log.info("study %s best valid %s %.5f", study_name, config.metric, result["best_value"])
    return result


def _nothing_complete(study: optuna.Study, counts: dict[str, int]) -> str:
    failed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
    reason = failed[-1].system_attrs.get("fail_reason", "") if failed else ""
    return (
        f"study {study.study_name!r} has no complete trial ({counts['pruned']} pruned, "
        f"{counts['failed']} failed)" + (f"; last failure: {reason}" if reason else "")
    )


def _rank_key(result: dict[str, Any], lower_is_better: bool) -> tuple[Any, ...]:
    value = result.get("best_value")
    usable = isinstance(value, int | float) and math.isfinite(value)
    score = (value if lower_is_better else -value) if usable else math.inf
    return (not usable, score, str(result["family"]), str(result.get("study_name", "")))


def select_best(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The family whose study reached the best validation metric, plus a leaderboard.

    Pure. Ties (equal values) go to the family name that sorts first, so the
    choice never depends on the order tasks finished in. Families without a
    usable value rank last and cannot win. Returns the winning result dict with
    `leaderboard`: one row per family, best first.
    """
    if not results:
        raise TuningError("select_best got no tuning results")
    metrics = {r["metric"] for r in results}
    if len(metrics) != 1:
        raise TuningError(f"results optimise different metrics {sorted(metrics)}; cannot rank")
    metric = metrics.pop()
    lower = metric in LOWER_IS_BETTER
    ranked = sorted(results, key=lambda r: _rank_key(r, lower))
    leaderboard = [
        {
            "rank": rank,
            "family": r["family"],
            "metric": metric,
            "best_value": r.get("best_value"),
            "n_complete": r.get("n_complete"),
            "n_pruned": r.get("n_pruned"),
            "n_trials": r.get("n_trials"),
            "study_name": r.get("study_name"),
            "child_run_id": r.get("child_run_id"),
            "best_params": r.get("best_params"),
            "summary": r.get("summary", ""),
            "elapsed_s": r.get("elapsed_s"),
        }
        for rank, r in enumerate(ranked, start=1)
    ]
    if _rank_key(ranked[0], lower)[0]:
        raise TuningError(f"no family has a usable {metric}: {[r['family'] for r in results]}")
    return {**ranked[0], "leaderboard": leaderboard}


def _log_leaderboard(run_id: str, leaderboard: list[dict[str, Any]]) -> None:
    mlflow_client = mlflow_utils.client()
    mlflow_client.log_dict(run_id, leaderboard, "leaderboard/leaderboard.json")
    flat = pd.DataFrame(
        [{k: v for k, v in row.items() if k != "best_params"} for row in leaderboard]
    )
    mlflow_client.log_text(run_id, flat.to_csv(index=False), "leaderboard/leaderboard.csv")


def refit_best(
    best: dict[str, Any],
    features_dir: str,
    *,
    parent_run_id: str | None = None,
    run_name: str | None = None,
    data_sha256: str | None = None,
    leaderboard: list[dict[str, Any]] | None = None,
    experiment: str = "training",
) -> dict[str, Any]:
    """Fit the winner on train + valid with its best params and log it like train_model.

    The logged pipeline holds scikit-learn/numpy objects only (`to_servable`);
    its predictions are checked against the fitted one before logging. The
    run records the valid metrics of the best trial (fitted on train only),
    the lineage tags and the leaderboard. Returns run_id, model_uri, family, params.
    """
    family = str(best["family"])
    params = family_space(family).resolve(best.get("best_params"))
    seed = int(best.get("seed", 0))
    leaderboard = leaderboard if leaderboard is not None else best.get("leaderboard")
    train, valid, test = split_frames(load_features(features_dir))
    train_valid = pd.concat([train, valid], ignore_index=True)
    X = feature_frame(train_valid)
    with threadpool_limits(limits=load_search_config().max_threads):
        fitted = build_pipeline(family, params, seed=seed).fit(X, labels(train_valid))
    model = to_servable(fitted)
    sample = X.head(SERVABLE_SAMPLE_ROWS)
    if not np.array_equal(model.predict_proba(sample), fitted.predict_proba(sample)):
        raise TuningError(f"the servable export of {family} predicts differently from the fit")

    mlflow_utils.configure()
    tags = {
        **lineage_tags(features_dir, data_sha256, family),
        "driftloop.run_kind": "refit",
        "tune.study_name": str(best.get("study_name", "")),
        "tune.child_run_id": str(best.get("child_run_id", "")),
        "tune.metric": str(best.get("metric", "")),
    }
    with mlflow.start_run(
        experiment_id=_experiment_for(parent_run_id, experiment),
        run_name=run_name or f"refit-{family}",
        parent_run_id=parent_run_id,
        nested=mlflow.active_run() is not None,
        tags=tags,
    ) as run:
        mlflow.log_params(
            {
                **{k: str(v)[:500] for k, v in params.items()},
                "family": family,
                "seed": seed,
                "n_train": len(train),
                "n_valid": len(valid),
                "n_test": len(test),
            }
        )
        valid_metrics = best.get("valid_metrics") or {}
        mlflow.log_metrics(
            {
                f"valid_{k}": float(v)
                for k, v in valid_metrics.items()
                if isinstance(v, int | float) and math.isfinite(v)
            }
        )
        info = log_fitted_model(model, X, params)
        run_id = run.info.run_id
    if leaderboard:
        _log_leaderboard(run_id, leaderboard)
        if parent_run_id:
            _log_leaderboard(parent_run_id, leaderboard)
    log.info("refit %s as run %s", family, run_id)
    return {"run_id": run_id, "model_uri": info.model_uri, "family": family, "params": params}


def run_search(
    features_dir: str,
    *,
    families: Sequence[str] | None = None,
    budgets: dict[str, dict[str, Any]] | None = None,
    seed: int = 0,
    study_prefix: str | None = None,
    storage: str | None = None,
    experiment: str = "training",
    run_name: str = "model-search",
    data_sha256: str | None = None,
    evaluate: bool = True,
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = (),
) -> dict[str, Any]:
    """The whole search in one process: parent run, a study per family, select, refit, test.

    What the DAG does across tasks, for the command line and the benchmark.
    `budgets` maps a family to {"n_trials", "timeout_s"} (search.yaml defaults
    otherwise). Study names are `<study_prefix>-<family>`: the same prefix
    resumes the same studies.
    """
    from training.evaluate import evaluate_run

    families = list(families or family_names())
    prefix = study_prefix or f"search-{folder_sha256(features_dir)[:12]}-seed{seed}"
    parent = start_parent_run(run_name, experiment, tags={"study_prefix": prefix})
    try:
        results = []
        for family in families:
            budget = {**default_budget(family), **(budgets or {}).get(family, {})}
            results.append(
                tune_family(
                    family,
                    features_dir,
                    n_trials=int(budget["n_trials"]),
                    timeout_s=float(budget["timeout_s"]),
                    study_name=f"{prefix}-{family}",
                    storage=storage,
                    parent_run_id=parent,
                    seed=seed,
                    experiment=experiment,
                    callbacks=callbacks,
                )
            )
        best = select_best(results)
        refit = refit_best(
            best,
            features_dir,
            parent_run_id=parent,
            data_sha256=data_sha256,
            leaderboard=best["leaderboard"],
            experiment=experiment,
        )
        test_metrics = evaluate_run(refit["run_id"], features_dir) if evaluate else None
    except BaseException:
        end_parent_run(parent, "FAILED")
        raise
    end_parent_run(parent)
    return {
        "parent_run_id": parent,
        "results": results,
        "best": {k: v for k, v in best.items() if k != "leaderboard"},
        "leaderboard": best["leaderboard"],
        "refit": refit,
        "test_metrics": test_metrics,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Search model families on a feature folder.")
    parser.add_argument("--features", required=True, help="Parquet folder written by featurize")
    parser.add_argument("--families", nargs="+", help=f"default: all of {family_names()}")
    parser.add_argument("--n-trials", type=int, help="per family (default: search.yaml)")
    parser.add_argument("--timeout-s", type=float, help="per family (default: search.yaml)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--study-prefix", help="reuse to resume earlier studies")
    parser.add_argument("--experiment", default="training")
    args = parser.parse_args(argv)
    override = {
        k: v
        for k, v in (("n_trials", args.n_trials), ("timeout_s", args.timeout_s))
        if v is not None
    }
    families = args.families or family_names()
    outcome = run_search(
        args.features,
        families=families,
        budgets={f: override for f in families},
        seed=args.seed,
        study_prefix=args.study_prefix,
        experiment=args.experiment,
    )
    print(json.dumps(outcome, indent=2, default=str))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main())
