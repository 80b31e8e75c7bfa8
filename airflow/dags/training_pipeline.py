"""
### training_pipeline

Raw reviews in, a gated MLflow model version out:

1. **ingest**: immutable snapshot of each source file + sha256 (lineage).
   No data path → a synthetic set is generated (offline demo).
2. **validate_raw**: Great Expectations checkpoint + Pandera contract; bad rows
   go to a quarantine file with a reason code; the run fails above the
   quarantine share.
3. **featurize**: the Spark job (`jobs/spark/featurize.py`, `spark-submit`):
   clean, de-duplicate, stable hash split, features via `mapInPandas` calling
   the same `features/` code the API runs.
4. **plan_search** → **tune** (one mapped task per model family, in parallel:
   an Optuna study each, resumable, every trial visible in MLflow under one
   parent run) → **select_best** → **refit** (winner on train + valid).
5. **evaluate** (held-out test split) → **register** (reference profile, alias
   `challenger`, promoted to `champion` by the quality gate).

Trigger it from the UI with the form below, from the daily `drift_check` DAG
(the `reason` field then says why), or via the REST API.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from pipelines.execution import heavy_task

DEFAULT_ARGS = {"retries": 1, "retry_delay": timedelta(seconds=20), "owner": "driftloop"}


@dag(
    dag_id="training_pipeline",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["driftloop", "training"],
    doc_md=__doc__,
    params={
        "data_path": Param(
            "",
            type="string",
            title="Data path",
            description="CSV, CSV.gz, Parquet or JSONL file. Empty: generate synthetic reviews.",
        ),
        "source": Param(
            "imdb",
            type="string",
            enum=["imdb", "kindle", "amazon", "synthetic"],
            title="Source format",
            description="Column mapping and label map from contracts/sources.yaml.",
        ),
        "extra_sources": Param(
            [],
            type="array",
            title="Extra sources",
            description='More inputs, e.g. [{"path": "...", "source": "amazon"}].',
        ),
        "synthetic_rows": Param(3000, type="integer", minimum=100, title="Synthetic rows"),
        "families": Param(
            ["logreg", "nbsvm", "naive_bayes", "sgd_elasticnet", "linear_svm", "svd_gbm"],
            type="array",
            title="Model families",
            description="One parallel Optuna study each (training/config/search_spaces.yaml).",
        ),
        "n_trials": Param(8, type="integer", minimum=1, title="Trials per family"),
        "family_timeout_s": Param(
            300, type="integer", minimum=10, title="Time budget per family (s)"
        ),
        "model_name": Param("review-sentiment", type="string", title="Registered model name"),
        "max_quarantine_share": Param(
            0.05, type="number", minimum=0, maximum=1, title="Max quarantine share"
        ),
        "reason": Param(
            "manual",
            type="string",
            title="Why this run",
            description="Set by drift_check when it triggers a retrain.",
        ),
        "trigger": Param(
            {},
            type="object",
            title="Trigger details",
            description="From drift_check: metrics, thresholds and report paths that fired.",
        ),
    },
)
def training_pipeline() -> None:
    @task
    def ingest() -> dict[str, Any]:
        from pipelines.training import ingest_sources

        context = get_current_context()
        return ingest_sources(dict(context["params"]), context["run_id"])

    @task
    def validate_raw(manifest: dict[str, Any]) -> dict[str, Any]:
        from pipelines.training import validate

        params = get_current_context()["params"]
        return validate(manifest, float(params["max_quarantine_share"]))

    @heavy_task("featurize")
    def featurize(validated: dict[str, Any]) -> dict[str, Any]:
        from pipelines.training import run_spark_featurize

        return run_spark_featurize(validated)

    @task
    def plan_search(featurized: dict[str, Any], manifest: dict[str, Any]) -> list[dict[str, Any]]:
        from pipelines.training import plan_search as run

        context = get_current_context()
        return run(featurized, manifest, dict(context["params"]), context["run_id"])

    @heavy_task("tune", max_active_tis_per_dagrun=4)
    def tune(spec: dict[str, Any]) -> dict[str, Any]:
        from training.tune import tune_family

        return tune_family(
            spec["family"],
            spec["features_dir"],
            n_trials=spec["n_trials"],
            timeout_s=spec["timeout_s"],
            study_name=spec["study_name"],
            parent_run_id=spec["parent_run_id"],
        )

    @task
    def select_best(results: list[dict[str, Any]]) -> dict[str, Any]:
        from training.tune import select_best as run

        return run(list(results))

    @heavy_task("refit")
    def refit(
        best: dict[str, Any], specs: list[dict[str, Any]], manifest: dict[str, Any]
    ) -> dict[str, Any]:
        from pipelines.training import refit_winner

        context = get_current_context()
        return refit_winner(best, specs, manifest, dict(context["params"]), context["run_id"])

    @task
    def evaluate(trained: dict[str, Any], featurized: dict[str, Any]) -> dict[str, Any]:
        from training.evaluate import evaluate_run

        return evaluate_run(trained["run_id"], featurized["features_dir"])

    @task
    def register(
        trained: dict[str, Any], metrics: dict[str, Any], featurized: dict[str, Any]
    ) -> dict[str, Any]:
        from pipelines.training import register_candidate

        params = get_current_context()["params"]
        return register_candidate(trained, featurized, str(params["model_name"]))

    manifest = ingest()
    validated = validate_raw(manifest)
    featurized = featurize(validated)
    specs = plan_search(featurized, manifest)
    results = tune.expand(spec=specs)
    trained = refit(select_best(results), specs, manifest)
    metrics = evaluate(trained, featurized)
    register(trained, metrics, featurized)


training_pipeline()
