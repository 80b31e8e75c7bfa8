"""The model search on a real Optuna RDB study and a real (SQLite) MLflow store."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest

from contracts.reviews import FEATURE_CONTRACT_VERSION
from features.reviews import build_features
from training import mlflow_utils
from training.data import folder_sha256
from training.evaluate import evaluate_run
from training.tune import (
    FINISHED,
    StudyMismatchError,
    TuningError,
    end_parent_run,
    load_search_config,
    load_search_data,
    make_objective,
    open_storage,
    plan_time_budget,
    refit_best,
    select_best,
    start_parent_run,
    tune_family,
)

EXPERIMENT = "tune-tests"
FAMILIES = ("logreg", "naive_bayes")
N_TRIALS = 5
REPO_ROOT = Path(__file__).resolve().parents[2]


def _name(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def _artifacts(run_id: str, folder: str | None = None) -> set[str]:
    return {a.path for a in mlflow_utils.client().list_artifacts(run_id, folder)}


def _csv(run_id: str, path: str) -> pd.DataFrame:
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path)
    return pd.read_csv(local)


@pytest.fixture(scope="module")
def search(driftloop_home: Path, features_dir: Path) -> dict[str, Any]:
    """Two families, a few trials each, under one parent run; then select and refit."""
    parent = start_parent_run("search-under-test", EXPERIMENT, tags={"trigger": "test"})
    results = [
        tune_family(
            family,
            str(features_dir),
            n_trials=N_TRIALS,
            timeout_s=300,
            study_name=_name(f"search-{family}"),
            parent_run_id=parent,
            seed=11,
            experiment=EXPERIMENT,
        )
        for family in FAMILIES
    ]
    best = select_best(results)
    refit = refit_best(
        best,
        str(features_dir),
        parent_run_id=parent,
        run_name="refit-under-test",
        data_sha256="snapshot-sha-for-test",
        leaderboard=best["leaderboard"],
        experiment=EXPERIMENT,
    )
    end_parent_run(parent)
    return {"parent": parent, "results": results, "best": best, "refit": refit}


@pytest.mark.slow
def test_each_family_returns_a_sane_summary(search: dict[str, Any]) -> None:
    metric = load_search_config().metric
    for result in search["results"]:
        assert result["metric"] == metric
        assert 0.85 < result["best_value"] <= 1.0, result
        assert result["n_complete"] + result["n_pruned"] == N_TRIALS
        assert result["n_complete"] >= 3  # the pruner waits for 3 finished trials
        assert result["valid_metrics"][metric] == pytest.approx(result["best_value"])
    logreg, naive_bayes = search["results"]
    assert {"C", "word_ngram_max", "char_ngram_max"} <= set(logreg["best_params"])
    assert {"variant", "alpha"} <= set(naive_bayes["best_params"])


@pytest.mark.slow
def test_child_runs_hold_every_trial(search: dict[str, Any], features_dir: Path) -> None:
    mlflow_client = mlflow_utils.client()
    parent = mlflow_client.get_run(search["parent"])
    assert parent.info.status == "FINISHED"
    children = mlflow_client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{search['parent']}'",
    )
    by_name = {run.info.run_name: run for run in children}
    assert {"tune-logreg", "tune-naive_bayes", "refit-under-test"} <= set(by_name)
    for result in search["results"]:
        child = mlflow_client.get_run(result["child_run_id"])
        assert child.info.run_name == f"tune-{result['family']}"
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == search["parent"]
        assert child.data.tags["data_sha256"] == folder_sha256(features_dir)
        assert child.data.params["seed"] == "11"
        assert child.data.metrics["best_valid_roc_auc"] == pytest.approx(result["best_value"])

        table = _csv(result["child_run_id"], "trials/trials.csv")
        assert len(table) == N_TRIALS
        assert sorted(table["number"]) == list(range(N_TRIALS))
        assert set(table["state"]) <= {"COMPLETE", "PRUNED"}
        assert table["source"].iloc[0] == "defaults"
        params = [c for c in table.columns if c.startswith("param.")]
        assert len(params) == len(result["best_params"])
        complete = table[table["state"] == "COMPLETE"]
        assert complete["value"].max() == pytest.approx(result["best_value"])
        assert complete["rung.1.0"].tolist() == pytest.approx(complete["value"].tolist())
        history = mlflow_client.get_metric_history(result["child_run_id"], "trial_roc_auc")
        assert sorted(m.step for m in history) == complete["number"].tolist()

        plots = _artifacts(result["child_run_id"], "plots")
        assert {
            "plots/optimization_history.png",
            "plots/rungs.png",
            "plots/param_importances.png",
            "plots/param_importances.json",
        } <= plots


@pytest.mark.slow
def test_select_best_picks_the_higher_study(search: dict[str, Any]) -> None:
    best, results = search["best"], search["results"]
    values = {r["family"]: r["best_value"] for r in results}
    assert best["family"] == max(values, key=lambda f: (values[f], -FAMILIES.index(f)))
    board = best["leaderboard"]
    assert [row["rank"] for row in board] == [1, 2]
    assert board[0]["best_value"] >= board[1]["best_value"]


@pytest.mark.slow
def test_refit_is_logged_like_a_trained_model(search: dict[str, Any], features_dir: Path) -> None:
    refit = search["refit"]
    run = mlflow_utils.client().get_run(refit["run_id"])
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert tags["feature_contract_version"] == FEATURE_CONTRACT_VERSION
    assert tags["data_sha256"] == "snapshot-sha-for-test"
    assert tags["model_family"] == refit["family"] == search["best"]["family"]
    assert tags["version.scikit-learn"] and tags["version.mlflow"] == mlflow.__version__
    assert tags.get("git_commit") == mlflow_utils.git_commit()
    assert tags["tune.child_run_id"] == search["best"]["child_run_id"]
    assert params["family"] == refit["family"] and params["n_train"] == "900"
    assert metrics["valid_roc_auc"] == pytest.approx(search["best"]["best_value"])
    assert {"leaderboard/leaderboard.json", "leaderboard/leaderboard.csv"} <= _artifacts(
        refit["run_id"], "leaderboard"
    )
    board = _csv(refit["run_id"], "leaderboard/leaderboard.csv")
    assert list(board["family"]) == [row["family"] for row in search["best"]["leaderboard"]]
    assert "leaderboard/leaderboard.csv" in _artifacts(search["parent"], "leaderboard")

    # the existing evaluation and the serving load path take over from here
    result = evaluate_run(refit["run_id"], str(features_dir))
    assert result["roc_auc"] > 0.85 and 0 <= result["ece"] <= 1
    pyfunc = mlflow.pyfunc.load_model(refit["model_uri"])
    served = np.asarray(pyfunc.predict(build_features(pd.DataFrame({"text": ["Loved it!"]}))))
    assert served.shape == (1, 2)


@pytest.mark.slow
def test_same_seed_same_search_other_seed_other_trials(
    driftloop_home: Path, features_dir: Path
) -> None:
    def run(seed: int) -> tuple[float, list[dict[str, Any]]]:
        name = _name(f"determinism-{seed}")
        result = tune_family(
            "logreg",
            str(features_dir),
            n_trials=4,
            timeout_s=300,
            study_name=name,
            seed=seed,
            experiment=EXPERIMENT,
        )
        study = optuna.load_study(study_name=name, storage=open_storage())
        return result["best_value"], [t.params for t in study.trials]

    first_value, first_params = run(5)
    again_value, again_params = run(5)
    _, other_params = run(6)
    assert first_value == again_value
    assert first_params == again_params
    # trial 0 is the defaults in every study; the sampled ones depend on the seed
    assert first_params[0] == other_params[0]
    assert first_params[1:] != other_params[1:]


class Crash(RuntimeError):
    """Stands in for a worker dying after some trials."""


@pytest.mark.slow
def test_a_crashed_study_resumes_where_it_stopped(driftloop_home: Path, features_dir: Path) -> None:
    name = _name("resume")
    parent = start_parent_run("resume-under-test", EXPERIMENT)

    def crash_after_three(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.number == 2:
            raise Crash("worker lost after trial 2")

    with pytest.raises(Crash):
        tune_family(
            "naive_bayes",
            str(features_dir),
            n_trials=6,
            timeout_s=300,
            study_name=name,
            parent_run_id=parent,
            seed=3,
            experiment=EXPERIMENT,
            callbacks=[crash_after_three],
        )
    study = optuna.load_study(study_name=name, storage=open_storage())
    before = {t.number: (t.params, t.value, t.state.name) for t in study.trials}
    assert sorted(before) == [0, 1, 2]
    child_id = study.user_attrs["mlflow_run_id"]
    assert mlflow_utils.client().get_run(child_id).info.status == "FAILED"

    result = tune_family(
        "naive_bayes",
        str(features_dir),
        n_trials=6,
        timeout_s=300,
        study_name=name,
        parent_run_id=parent,
        seed=3,
        experiment=EXPERIMENT,
    )
    assert result["n_complete"] + result["n_pruned"] == 6
    study = optuna.load_study(study_name=name, storage=open_storage())
    assert [t.number for t in study.trials] == list(range(6))
    after = {t.number: (t.params, t.value, t.state.name) for t in study.trials}
    assert {n: after[n] for n in before} == before  # the first three were kept, not rerun
    # the resumed attempt continues the same child run, which now holds all six trials
    assert result["child_run_id"] == child_id
    child = mlflow_utils.client().get_run(child_id)
    assert child.info.status == "FINISHED" and child.data.tags["attempts"] == "2"
    assert len(_csv(child_id, "trials/trials.csv")) == 6

    # a third call with the same budget has nothing left to do
    again = tune_family(
        "naive_bayes",
        str(features_dir),
        n_trials=6,
        timeout_s=300,
        study_name=name,
        parent_run_id=parent,
        seed=3,
        experiment=EXPERIMENT,
    )
    assert again["n_trials"] == 6 and again["best_value"] == result["best_value"]
    end_parent_run(parent)


@pytest.mark.slow
def test_a_killed_worker_is_resumed_and_its_trial_marked_failed(
    driftloop_home: Path, features_dir: Path
) -> None:
    """SIGKILL a real worker mid-study; the next attempt fails its orphan and continues."""
    name = _name("killed")
    storage = open_storage()
    # From its fourth trial on, the worker's trials hang (heartbeats still
    # going), so the kill always lands mid-trial however fast trials finish.
    script = (
        "import time\n"
        "import training.tune as tune\n"
        "real = tune.make_objective\n"
        "def hanging(*args, **kwargs):\n"
        "    inner = real(*args, **kwargs)\n"
        "    def objective(trial):\n"
        "        if trial.number >= 3:\n"
        "            time.sleep(600)\n"
        "        return inner(trial)\n"
        "    return objective\n"
        "tune.make_objective = hanging\n"
        f"tune.tune_family('logreg', {str(features_dir)!r}, n_trials=500, timeout_s=600, "
        f"study_name={name!r}, seed=2, experiment={EXPERIMENT!r})\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        finished, running = 0, 0
        seen_running: set[int] = set()
        for _ in range(1000):  # poll the shared storage, at most ~5 minutes
            if worker.poll() is not None:
                pytest.fail(f"worker exited early: {worker.stderr.read().decode()[-2000:]}")
            try:
                trials = optuna.load_study(study_name=name, storage=storage).trials
            except KeyError:  # study not created yet
                trials = []
            states = [t.state for t in trials]
            finished = sum(state in FINISHED for state in states)
            running = states.count(optuna.trial.TrialState.RUNNING)
            current = {t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING}
            # Kill mid-trial, but only a trial seen running on an earlier poll:
            # its heartbeat is recorded by then (a trial killed in the instant
            # between creation and first heartbeat can never be judged stale).
            if finished >= 3 and running and current & seen_running:
                break
            seen_running = current
            time.sleep(0.3)
        assert finished >= 3 and running == 1
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker.stderr.close()  # type: ignore[union-attr]

    study = optuna.load_study(study_name=name, storage=storage)
    before = {t.number: (t.params, t.value) for t in study.get_trials(states=FINISHED)}
    orphans = [t.number for t in study.trials if t.state.name == "RUNNING"]
    assert len(orphans) == 1
    # A short grace period lets this attempt declare the dead worker's trial stale.
    config = replace(load_search_config(), heartbeat_interval_s=1, grace_period_s=2)
    time.sleep(config.grace_period_s + 1)
    target = len(before) + 2
    result = tune_family(
        "logreg",
        str(features_dir),
        n_trials=target,
        timeout_s=300,
        study_name=name,
        seed=2,
        experiment=EXPERIMENT,
        config=config,
    )
    assert result["n_complete"] + result["n_pruned"] == target
    study = optuna.load_study(study_name=name, storage=open_storage())
    after = {t.number: (t.params, t.value) for t in study.get_trials(states=FINISHED)}
    assert {n: after[n] for n in before} == before
    assert study.trials[orphans[0]].state.name == "FAIL"
    assert result["n_failed"] == 1


@pytest.mark.slow
def test_a_trial_that_cannot_finish_in_time_is_stopped_after_its_cheap_rung(
    features_dir: Path,
) -> None:
    config = load_search_config()
    data = load_search_data(str(features_dir))
    study = optuna.create_study(direction=config.direction)
    study.optimize(make_objective("naive_bayes", data, config, seed=0), n_trials=1)
    past = time.monotonic() - 1.0
    study.optimize(make_objective("naive_bayes", data, config, seed=0, deadline=past), n_trials=1)
    first, second = study.trials
    assert first.state.name == "COMPLETE"  # a study's first trial always runs to the end
    assert second.state.name == "PRUNED" and second.user_attrs["stopped_for_time"] is True
    assert list(second.intermediate_values) == [0]  # only the cheap rung ran


@pytest.mark.slow
def test_a_study_name_cannot_be_reused_for_another_family(
    driftloop_home: Path, features_dir: Path
) -> None:
    name = _name("mismatch")
    tune_family(
        "naive_bayes",
        str(features_dir),
        n_trials=1,
        timeout_s=60,
        study_name=name,
        experiment=EXPERIMENT,
    )
    with pytest.raises(StudyMismatchError, match=r"family='naive_bayes', not 'logreg'"):
        tune_family(
            "logreg",
            str(features_dir),
            n_trials=1,
            timeout_s=60,
            study_name=name,
            experiment=EXPERIMENT,
        )


def _result(family: str, value: float | None, metric: str = "roc_auc") -> dict[str, Any]:
    return {
        "family": family,
        "metric": metric,
        "best_value": value,
        "best_params": {},
        "study_name": f"s-{family}",
    }


def test_select_best_is_pure_and_breaks_ties_by_name() -> None:
    results = [_result("sgd_elasticnet", 0.93), _result("logreg", 0.95), _result("nbsvm", 0.95)]
    best = select_best(results)
    assert best["family"] == "logreg"  # tie with nbsvm: the name that sorts first
    assert select_best(list(reversed(results)))["family"] == "logreg"
    assert [r["family"] for r in best["leaderboard"]] == ["logreg", "nbsvm", "sgd_elasticnet"]
    assert results[0] == _result("sgd_elasticnet", 0.93)  # inputs untouched


def test_select_best_handles_direction_and_missing_values() -> None:
    lower = [_result("a", 0.30, "log_loss"), _result("b", 0.25, "log_loss")]
    assert select_best(lower)["family"] == "b"
    missing = [_result("a", None), _result("b", math.nan), _result("c", 0.7)]
    best = select_best(missing)
    assert best["family"] == "c"
    assert [r["family"] for r in best["leaderboard"]] == ["c", "a", "b"]
    with pytest.raises(TuningError, match="no family has a usable"):
        select_best([_result("a", None)])
    with pytest.raises(TuningError, match="different metrics"):
        select_best([_result("a", 0.9), _result("b", 0.3, "log_loss")])
    with pytest.raises(TuningError, match="no tuning results"):
        select_best([])


def test_time_budget_follows_the_shares() -> None:
    config = load_search_config()
    plan = plan_time_budget(1000.0, ["nbsvm", "logreg"], config)
    shares = config.time_shares
    assert sum(plan.values()) == pytest.approx(1000.0)
    assert plan["nbsvm"] / plan["logreg"] == pytest.approx(shares["nbsvm"] / shares["logreg"])


def test_parent_run_status_is_validated(driftloop_home: Path) -> None:
    run_id = start_parent_run("status-check", EXPERIMENT)
    with pytest.raises(ValueError, match="status must be one of"):
        end_parent_run(run_id, "DONE")
    end_parent_run(run_id, "KILLED")
    assert mlflow_utils.client().get_run(run_id).info.status == "KILLED"
