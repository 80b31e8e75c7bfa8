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
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import mlflow
import numpy as np
import optuna
import pandas as pd
from threadpoolctl import threadpool_limits

from core.usecases import DEFAULT_USE_CASE
from training import mlflow_utils
from training.data import feature_frame, folder_sha256, labels, load_features, split_frames
from training.evaluate import DEFAULT_THRESHOLD, LOWER_IS_BETTER, TAG_THRESHOLD
from training.objective import (  # noqa: F401  (re-exported: the search's public API)
    SearchData,
    clear_feature_cache,
    load_search_data,
    make_objective,
    predicted_fit_seconds,
)
from training.search_config import (  # noqa: F401
    SEARCH_CONFIG,
    STORAGE_ENV,
    SearchConfig,
    SearchConfigError,
    StudyMismatchError,
    TuningError,
    default_budget,
    load_search_config,
    open_storage,
    plan_time_budget,
    redact,
    search_config_for,
    storage_url,
)
from training.study_runs import (  # noqa: F401
    _child_run,
    _experiment_for,
    _log_study,
    _LogTrialToRun,
    _state_counts,
    _StopWhenOutOfTime,
    end_parent_run,
    start_parent_run,
    trials_table,
)
from training.train import lineage_tags, log_fitted_model
from training.zoo import (
    build_pipeline,
    family_names,
    family_space,
    layout_for,
    search_spaces_for,
    to_servable,
)

log = logging.getLogger(__name__)

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
# Recoverable per-trial failures (a parameter combination an estimator rejects,
# a numerical breakdown): the trial is recorded as FAIL and the study goes on.
TRIAL_ERRORS: tuple[type[Exception], ...] = (ValueError, ArithmeticError)
SERVABLE_SAMPLE_ROWS = 200


# ---- public API -----------------------------------------------------------------------


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
    use_case: str = DEFAULT_USE_CASE,
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
    config = config or search_config_for(use_case)
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    space = family_space(family, use_case=use_case)
    data = load_search_data(features_dir, use_case)
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
        {
            "family": family,
            "metric": config.metric,
            "data_sha256": data.sha256,
            "seed": str(seed),
            "use_case": use_case,
        },
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
            "use_case": use_case,
        },
    )
    attempts = int(study.user_attrs.get("attempts", 0)) + 1
    study.set_user_attr("attempts", attempts)
    mlflow_utils.set_run_tags(
        run_id,
        {
            **lineage_tags(features_dir, None, family, use_case),
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
                    make_objective(family, data, config, seed, deadline, use_case),
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
    assert best.value is not None  # at least one trial completed (checked above)
    result = {
        "family": family,
        "study_name": study_name,
        "metric": config.metric,
        "best_value": float(best.value),
        "best_params": dict(best.params),
        "best_trial": best.number,
        "valid_metrics": dict(best.user_attrs.get("valid_metrics", {})),
        "decision_threshold": float(best.user_attrs.get("decision_threshold", DEFAULT_THRESHOLD)),
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
    value: Any = result.get("best_value")
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
    # log_dict writes any JSON value; its annotation says dict.
    mlflow_client.log_dict(run_id, leaderboard, "leaderboard/leaderboard.json")  # type: ignore[arg-type]
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
    use_case: str = DEFAULT_USE_CASE,
) -> dict[str, Any]:
    """Fit the winner on train + valid with its best params and log it like train_model.

    The logged pipeline holds scikit-learn/numpy objects only (`to_servable`);
    its predictions are checked against the fitted one before logging. The
    run records the valid metrics of the best trial (fitted on train only),
    the lineage tags and the leaderboard. Returns run_id, model_uri, family, params.
    """
    family = str(best["family"])
    threshold = float(best.get("decision_threshold", DEFAULT_THRESHOLD))
    params = family_space(family, use_case=use_case).resolve(best.get("best_params"))
    seed = int(best.get("seed", 0))
    leaderboard = leaderboard if leaderboard is not None else best.get("leaderboard")
    train, valid, test = split_frames(load_features(features_dir, use_case))
    train_valid = pd.concat([train, valid], ignore_index=True)
    X = feature_frame(train_valid, use_case)
    pipeline = build_pipeline(
        family, params, seed=seed, spaces=search_spaces_for(use_case), layout=layout_for(use_case)
    )
    with threadpool_limits(limits=search_config_for(use_case).max_threads):
        fitted = pipeline.fit(X, labels(train_valid, use_case))
    model = to_servable(fitted)
    sample = X.head(SERVABLE_SAMPLE_ROWS)
    if not np.array_equal(model.predict_proba(sample), fitted.predict_proba(sample)):
        raise TuningError(f"the servable export of {family} predicts differently from the fit")

    mlflow_utils.configure()
    tags = {
        **lineage_tags(features_dir, data_sha256, family, use_case),
        "driftloop.run_kind": "refit",
        "tune.study_name": str(best.get("study_name", "")),
        "tune.child_run_id": str(best.get("child_run_id", "")),
        "tune.metric": str(best.get("metric", "")),
        TAG_THRESHOLD: repr(threshold),
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
        info = log_fitted_model(model, X, params, decision_threshold=threshold)
        run_id = run.info.run_id
    if leaderboard:
        _log_leaderboard(run_id, leaderboard)
        if parent_run_id:
            _log_leaderboard(parent_run_id, leaderboard)
    log.info("refit %s as run %s", family, run_id)
    return {
        "run_id": run_id,
        "model_uri": info.model_uri,
        "family": family,
        "params": params,
        "decision_threshold": threshold,
    }


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
    use_case: str = DEFAULT_USE_CASE,
) -> dict[str, Any]:
    """The whole search in one process: parent run, a study per family, select, refit, test.

    What the DAG does across tasks, for the command line and the benchmark.
    `budgets` maps a family to {"n_trials", "timeout_s"} (search.yaml defaults
    otherwise). Study names are `<study_prefix>-<family>`: the same prefix
    resumes the same studies.
    """
    from training.evaluate import evaluate_run

    families = list(families or family_names(use_case=use_case))
    prefix = study_prefix or f"search-{folder_sha256(features_dir)[:12]}-seed{seed}"
    parent = start_parent_run(run_name, experiment, tags={"study_prefix": prefix})
    try:
        results = []
        for family in families:
            budget = {
                **default_budget(family, use_case=use_case),
                **(budgets or {}).get(family, {}),
            }
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
                    use_case=use_case,
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
            use_case=use_case,
        )
        test_metrics = (
            evaluate_run(refit["run_id"], features_dir, use_case=use_case) if evaluate else None
        )
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
    parser.add_argument("--use-case", default=DEFAULT_USE_CASE, help="a registered use case")
    args = parser.parse_args(argv)
    override = {
        k: v
        for k, v in (("n_trials", args.n_trials), ("timeout_s", args.timeout_s))
        if v is not None
    }
    families = args.families or family_names(use_case=args.use_case)
    outcome = run_search(
        args.features,
        families=families,
        budgets={f: override for f in families},
        seed=args.seed,
        study_prefix=args.study_prefix,
        experiment=args.experiment,
        use_case=args.use_case,
    )
    print(json.dumps(outcome, indent=2, default=str))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main())
