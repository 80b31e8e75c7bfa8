"""MLflow side of the search: parent and child runs, per-trial metrics, trial tables, plots."""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from training import mlflow_utils
from training.search_config import SearchConfig

log = logging.getLogger(__name__)

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
    if previous and _resumable_run(previous, parent_run_id):
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
            fig: Any = ax.figure  # the top-level Figure here (pandas/optuna draw no subfigures)
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
        assert best.value is not None  # a complete single-objective trial has its value
        metrics.append(Metric(f"best_valid_{config.metric}", float(best.value), now, 0))
        metrics += [
            Metric(f"best_valid_{k}", float(v), now, 0)
            for k, v in best.user_attrs.get("valid_metrics", {}).items()
            if isinstance(v, int | float) and math.isfinite(v)
        ]
        tags.append(RunTag("best_trial", str(best.number)))
        tags += [RunTag(f"best.{k}", str(v)) for k, v in best.params.items()]
    mlflow_client.log_batch(run_id, metrics=metrics, tags=tags)


def _state_counts(study: optuna.Study) -> dict[str, int]:
    states = [t.state for t in study.get_trials(deepcopy=False)]
    state = optuna.trial.TrialState
    return {
        "complete": states.count(state.COMPLETE),
        "pruned": states.count(state.PRUNED),
        "failed": states.count(state.FAIL),
    }
