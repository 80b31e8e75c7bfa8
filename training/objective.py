"""What one trial does: load the train/valid rows, fit the family on rungs, score valid.

The text representation (vectorisers, SVD, scalers) needs no labels, so it is fitted once per
distinct configuration on all train rows and kept in a small in-process cache; only the
supervised head is refitted per rung.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import joblib
import numpy as np
import optuna
import pandas as pd
from sklearn.base import clone

from core.usecases import DEFAULT_USE_CASE
from training.data import feature_frame, folder_sha256, labels, load_features, split_frames
from training.evaluate import choose_threshold, compute_metrics
from training.promote import threshold_objective_for
from training.search_config import SearchConfig, TuningError
from training.zoo import (
    FEATURES_STEP,
    build_pipeline,
    family_space,
    layout_for,
    search_spaces_for,
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


def load_search_data(features_dir: str, use_case: str = DEFAULT_USE_CASE) -> SearchData:
    """The train and valid splits of a feature folder; each must hold both classes."""
    train, valid, _ = split_frames(load_features(features_dir, use_case))
    for name, part in (("train", train), ("valid", valid)):
        if labels(part, use_case).nunique() < 2:
            raise TuningError(
                f"the {name} split of {features_dir} holds only label "
                f"{labels(part).iloc[0]}; a search needs both classes in train and valid"
            )
    return SearchData(
        x_train=feature_frame(train, use_case),
        y_train=labels(train, use_case).to_numpy(),
        x_valid=feature_frame(valid, use_case),
        y_valid=labels(valid, use_case).to_numpy(),
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
    use_case: str = DEFAULT_USE_CASE,
) -> Callable[[optuna.Trial], float]:
    """The objective of one family's study (see the module docstring for the rungs).

    `deadline` (time.monotonic()) bounds the attempt: once the study has a
    complete trial, a trial whose next rung is predicted to end after it is
    stopped (PRUNED, user attr `stopped_for_time`) instead of overrunning.
    Without a binding deadline the objective is deterministic.
    """
    space = family_space(family, use_case=use_case)
    spaces, layout = search_spaces_for(use_case), layout_for(use_case)
    threshold_objective = threshold_objective_for(use_case)
    order = np.random.default_rng(seed).permutation(len(data.y_train))
    last = len(config.fit_fractions) - 1

    def objective(trial: optuna.Trial) -> float:
        pipeline = build_pipeline(
            family, space.suggest(trial), seed=seed, spaces=spaces, layout=layout
        )
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
            # The label the model would serve: at the threshold chosen on these valid rows.
            threshold = choose_threshold(data.y_valid, proba, threshold_objective)
            metrics = compute_metrics(data.y_valid, proba, threshold)
            trial.report(metrics[config.metric], step)
            if step < last and trial.should_prune():
                raise optuna.TrialPruned(
                    f"valid {config.metric} {metrics[config.metric]:.4f} at rung {fraction} "
                    "is below the median of earlier trials"
                )
        trial.set_user_attr("valid_metrics", metrics)
        trial.set_user_attr("decision_threshold", threshold)
        trial.set_user_attr("head_fit_seconds", round(time.perf_counter() - started, 3))
        return metrics[config.metric]

    return objective
