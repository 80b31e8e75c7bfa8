"""Fit the baseline pipeline on a feature folder and record it as one MLflow run.

Fit on train and score valid (the honest estimate, logged as `valid_*`), then
refit the same parameters on train + valid for the model that is logged: the
test split stays untouched until `training.evaluate` and the gate. The run
carries what a later reader needs to trust or reproduce it: the feature
contract and fingerprint, the data hash, the code commit and package versions.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import infer_signature

from core.usecases import DEFAULT_USE_CASE, get_use_case
from training import mlflow_utils
from training.data import feature_frame, folder_sha256, labels, load_features, split_frames
from training.evaluate import (
    DEFAULT_THRESHOLD,
    TAG_THRESHOLD,
    choose_threshold,
    compute_metrics,
    score_frame,
)
from training.models import build_baseline, parse_param_overrides, resolve_params
from training.promote import threshold_objective_for

log = logging.getLogger(__name__)

MODEL_FAMILY = "baseline_tfidf_logreg"
SIGNATURE_ROWS = 200


def lineage_tags(
    features_dir: str,
    data_sha256: str | None,
    model_family: str,
    use_case: str = DEFAULT_USE_CASE,
) -> dict[str, Any]:
    """Tags every model run carries: use case, contract, fingerprint, data hash, commit, versions.

    Without `data_sha256` (the ingest snapshot hash) the hash of the feature
    folder's Parquet bytes is recorded instead.
    """
    contract = get_use_case(use_case).contract
    tags: dict[str, Any] = {
        mlflow_utils.TAG_USE_CASE: use_case,
        mlflow_utils.TAG_CONTRACT: contract.FEATURE_CONTRACT_VERSION,
        mlflow_utils.TAG_FINGERPRINT: contract.feature_fingerprint(),
        mlflow_utils.TAG_DATA_SHA: data_sha256 or folder_sha256(features_dir),
        mlflow_utils.TAG_FEATURES_DIR: str(features_dir),
        "model_family": model_family,
        **{f"version.{name}": v for name, v in mlflow_utils.package_versions().items()},
    }
    commit = mlflow_utils.git_commit()
    if commit:
        tags[mlflow_utils.TAG_GIT] = commit
    return tags


def log_fitted_model(
    model: Any,
    X: pd.DataFrame,
    params: dict[str, Any],
    *,
    decision_threshold: float = DEFAULT_THRESHOLD,
) -> Any:
    """Log a fitted pipeline to the active run the way serving loads it; returns ModelInfo.

    cloudpickle (fast to load, see FIELD-NOTES), a signature from the feature
    frame, pinned requirements, and pyfunc predicting probabilities. The run's
    `driftloop.model_uri` tag points at the logged model; the decision
    threshold (chosen on valid) is in the model's metadata and the run's tag
    `decision_threshold`, which registration copies to the version.
    """
    sample = X.head(SIGNATURE_ROWS)
    with warnings.catch_warnings():
        # The feature contract guarantees non-null integer columns.
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        signature = infer_signature(sample, model.predict_proba(sample))
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        serialization_format="cloudpickle",
        signature=signature,
        input_example=X.head(3),
        pip_requirements=mlflow_utils.pip_requirements(),
        pyfunc_predict_fn="predict_proba",
        params=params,
        metadata={TAG_THRESHOLD: float(decision_threshold)},
    )
    mlflow.set_tag(mlflow_utils.TAG_MODEL_URI, info.model_uri)
    mlflow.set_tag(TAG_THRESHOLD, repr(float(decision_threshold)))
    return info


def train_model(
    features_dir: str,
    *,
    experiment: str = "training",
    run_name: str | None = None,
    params: dict[str, Any] | None = None,
    data_sha256: str | None = None,
    parent_run_id: str | None = None,
) -> dict[str, Any]:
    """Train, validate and log one model; returns run_id, model_uri and valid_metrics.

    `data_sha256` is the ingest snapshot hash for lineage; without it the hash
    of the feature folder's Parquet bytes is recorded instead. `parent_run_id`
    nests the run (a tuning study or a pipeline run); when a run is already
    active in this thread the new run is nested under it.
    """
    resolved = resolve_params(params)
    frame = load_features(features_dir)
    train, valid, test = split_frames(frame)
    train_valid = pd.concat([train, valid], ignore_index=True)

    mlflow_utils.configure()
    experiment_id = mlflow_utils.get_or_create_experiment(experiment)
    tags = lineage_tags(features_dir, data_sha256, MODEL_FAMILY)

    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=run_name,
        parent_run_id=parent_run_id,
        nested=mlflow.active_run() is not None,
        tags=tags,
    ) as run:
        mlflow.log_params(
            {**resolved, "n_train": len(train), "n_valid": len(valid), "n_test": len(test)}
        )

        model = build_baseline(resolved).fit(feature_frame(train), labels(train))
        valid_proba = score_frame(model, valid)
        threshold = choose_threshold(labels(valid), valid_proba, threshold_objective_for())
        valid_metrics = compute_metrics(labels(valid), valid_proba, threshold)
        mlflow.log_metrics({f"valid_{k}": v for k, v in valid_metrics.items()})

        final = build_baseline(resolved).fit(feature_frame(train_valid), labels(train_valid))
        info = log_fitted_model(
            final, feature_frame(train_valid), resolved, decision_threshold=threshold
        )
        run_id = run.info.run_id

    log.info("run %s valid metrics: %s", run_id, valid_metrics)
    return {
        "run_id": run_id,
        "model_uri": info.model_uri,
        "valid_metrics": valid_metrics,
        "decision_threshold": threshold,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the baseline on a feature folder.")
    parser.add_argument("--features", required=True, help="Parquet folder written by featurize")
    parser.add_argument("--experiment", default="training")
    parser.add_argument("--run-name")
    parser.add_argument("--data-sha256")
    parser.add_argument("--param", action="append", help="NAME=VALUE override (repeatable)")
    args = parser.parse_args(argv)
    result = train_model(
        args.features,
        experiment=args.experiment,
        run_name=args.run_name,
        params=parse_param_overrides(args.param),
        data_sha256=args.data_sha256,
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
