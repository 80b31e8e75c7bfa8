"""
### training_pipeline

Raw labelled rows of one use case (the `use_case` Param: review sentiment,
credit default, any use case of the registry `core/usecases.yaml`) in, a gated
MLflow model version out:

1. **ingest**: immutable snapshot of each source file + sha256 (lineage).
   No data path → a synthetic set of the use case is generated (offline demo).
2. **validate_raw**: the use case's Great Expectations suite + Pandera contract
   (+ its row checks: text checks, or value ranges and allowed codes for a
   tabular use case); bad rows go to a quarantine file with a reason code; the
   run fails above the quarantine share.
3. **featurize**: the Spark job (`jobs/spark/featurize.py`, `spark-submit`):
   clean, de-duplicate, stable hash split, features via `mapInPandas` calling
   the same `features/` code the API runs.
4. **plan_search** → **tune** (one mapped task per model family, in parallel:
   an Optuna study each, resumable, every trial visible in MLflow under one
   parent run) → **select_best** → **refit** (winner on train + valid).
5. **evaluate** (held-out test split) → **register** (reference profile, alias
   `challenger`, promoted to `champion` by the quality gate of `gate.yaml`: no
   gated metric may regress overall or on any segment, and the primary must improve;
   with enough labelled shadow-scored live traffic of the pair, none may regress there either).

Trigger it from the UI (**Trigger**: the form's defaults train on synthetic
reviews; pick another **Use case** for its synthetic rows), from the daily `drift_check` DAG (the `reason` and `trigger` Params
then say why), or via the REST API with the same names as `conf` keys. A bad
value fails **ingest** at once with one line naming the Param.

Each task log starts with what the task is about to do and ends with its
figures. Task pages carry buttons to what a task produced: **validate_raw** →
Great Expectations Data Docs and the quarantined rows (local files),
**plan_search** → the MLflow parent run with every trial, **refit** /
**evaluate** → the model's MLflow run, **register** → the registered model
version and the gate decision.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, get_current_context

from pipelines.execution import heavy_task, lake_task
from pipelines.links import links
from pipelines.params import (
    INFER,
    LIMITS,
    all_family_names,
    params_markdown,
    source_names,
    use_case_choices,
)

ADVANCED = "Advanced: search budget and thresholds"
DEFAULT_ARGS = {"retries": 1, "retry_delay": timedelta(seconds=20), "owner": "driftloop"}


USE_CASES = use_case_choices()

PARAMS = {
    # Everyday fields first (the form's default section) ...
    "use_case": Param(
        next(iter(USE_CASES)),
        type="string",
        enum=list(USE_CASES),
        values_display=USE_CASES,
        title="Use case",
        description="Which registered use case (core/usecases.yaml) to train: its raw "
        "columns, contract, sources, model families and registered model.",
    ),
    "data_path": Param(
        None,
        type=["null", "string"],
        title="Data file",
        description="Absolute path of a CSV, CSV.gz, Parquet or JSONL file of labelled "
        "rows of the use case that the Airflow workers can read. Empty: generate "
        "synthetic rows of the use case (see Synthetic rows).",
    ),
    "source": Param(
        INFER,
        type="string",
        enum=[INFER, *source_names()],
        values_display={
            INFER: "Infer from the file name",
            **{name: name for name in source_names()},
        },
        title="Source format",
        description="Which column mapping and label map of contracts/sources.yaml the "
        "file uses (an entry of the chosen use case). 'Infer from the file name': a file "
        "named like a known dataset (e.g. imdb_50k.csv.gz, uci_credit_card.csv.gz) uses "
        "that entry, any other file the use case's default layout.",
    ),
    "model_name": Param(
        None,
        type=["null", "string"],
        title="Registered model name",
        description="The MLflow registered model that gets the new version. "
        "Empty: the use case's model (review-sentiment, credit-default).",
    ),
    "synthetic_rows": Param(
        3000,
        type="integer",
        minimum=int(LIMITS["synthetic_rows"][0]),
        maximum=int(LIMITS["synthetic_rows"][1]),
        title="Synthetic rows",
        description="How many synthetic rows of the use case to generate when Data file "
        "is empty (ignored otherwise).",
    ),
    "extra_sources": Param(
        None,
        type=["null", "array"],
        items={"type": "object"},
        title="Extra sources",
        description='More labelled files, as a JSON list: [{"path": "/data/amazon.csv.gz", '
        '"source": "amazon"}]. "source" may be "infer" or left out (inferred from the '
        "file name). Empty: none.",
    ),
    # ... then the search budget and the thresholds.
    "families": Param(
        None,
        type=["null", "array"],
        items={"type": "string"},
        examples=all_family_names(),
        title="Model families",
        description="One parallel Optuna study each, from the use case's search_spaces.yaml "
        "(reviews: training/config/, credit: usecases/credit/). Empty: every family of "
        "the use case.",
        section=ADVANCED,
    ),
    "n_trials": Param(
        8,
        type="integer",
        minimum=int(LIMITS["n_trials"][0]),
        maximum=int(LIMITS["n_trials"][1]),
        title="Trials per family",
        description="Optuna trials per family (a retried task resumes its study).",
        section=ADVANCED,
    ),
    "family_timeout_s": Param(
        300,
        type="integer",
        minimum=int(LIMITS["family_timeout_s"][0]),
        maximum=int(LIMITS["family_timeout_s"][1]),
        title="Time budget per family (s)",
        description="A family's search stops starting trials after this many seconds.",
        section=ADVANCED,
    ),
    "max_quarantine_share": Param(
        0.05,
        type="number",
        minimum=LIMITS["max_quarantine_share"][0],
        maximum=LIMITS["max_quarantine_share"][1],
        title="Max quarantine share",
        description="validate_raw fails the run when a larger share of rows is quarantined.",
        section=ADVANCED,
    ),
    "reason": Param(
        None,
        type=["null", "string"],
        title="Why this run",
        description="Logged and tagged on the MLflow run. Set by drift_check when it "
        "triggers a retrain. Empty: manual.",
        section=ADVANCED,
    ),
    "trigger": Param(
        None,
        type=["null", "object"],
        title="Trigger details",
        description="Set by drift_check: the metrics, thresholds and report that fired. "
        "Empty for manual runs.",
        section=ADVANCED,
    ),
}


def run_params(check_files: bool = False) -> dict[str, Any]:
    """This run's Params, checked and normalised (pipelines.params).

    A bad value fails the task at once with one line naming the Param; no
    retry, since the same value would fail again.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from pipelines.params import ParamError, check_training_params

    try:
        return check_training_params(get_current_context()["params"], check_files=check_files)
    except ParamError as exc:
        logging.getLogger(__name__).error("%s", exc)
        raise AirflowFailException(str(exc)) from None


@dag(
    dag_id="training_pipeline",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["driftloop", "training"],
    doc_md=f"{__doc__}\n{params_markdown(PARAMS)}",
    params=PARAMS,
)
def training_pipeline() -> None:
    @lake_task
    def ingest() -> dict[str, Any]:
        from pipelines.training import ingest_sources

        context = get_current_context()
        return ingest_sources(run_params(check_files=True), context["run_id"])

    @lake_task
    def validate_raw(manifest: dict[str, Any]) -> dict[str, Any]:
        from pipelines.training import validate

        return validate(manifest, float(run_params()["max_quarantine_share"]))

    @heavy_task("featurize")
    def featurize(validated: dict[str, Any]) -> dict[str, Any]:
        from pipelines.training import run_spark_featurize

        return run_spark_featurize(validated)

    @lake_task
    def plan_search(featurized: dict[str, Any], manifest: dict[str, Any]) -> list[dict[str, Any]]:
        from pipelines.training import plan_search as run

        return run(featurized, manifest, run_params(), get_current_context()["run_id"])

    @heavy_task("tune", max_active_tis_per_dagrun=4)
    def tune(spec: dict[str, Any]) -> dict[str, Any]:
        from pipelines.training import tune_one

        return tune_one(spec)

    @lake_task
    def select_best(results: list[dict[str, Any]]) -> dict[str, Any]:
        from pipelines.training import pick_best

        return pick_best(list(results))

    @heavy_task("refit")
    def refit(
        best: dict[str, Any], specs: list[dict[str, Any]], manifest: dict[str, Any]
    ) -> dict[str, Any]:
        from pipelines.training import refit_winner

        context = get_current_context()
        return refit_winner(best, specs, manifest, run_params(), context["run_id"])

    @lake_task
    def evaluate(trained: dict[str, Any], featurized: dict[str, Any]) -> dict[str, Any]:
        from pipelines.training import evaluate_refit

        return evaluate_refit(trained, featurized)

    @lake_task
    def register(
        trained: dict[str, Any], metrics: dict[str, Any], featurized: dict[str, Any]
    ) -> dict[str, Any]:
        from pipelines.training import register_candidate

        return register_candidate(trained, featurized, str(run_params()["model_name"]))

    manifest = ingest()
    validated = validate_raw(manifest)
    featurized = featurize(validated)
    specs = plan_search(featurized, manifest)
    results = tune.expand(spec=specs)
    trained = refit(select_best(results), specs, manifest)
    metrics = evaluate(trained, featurized)
    registered = register(trained, metrics, featurized)

    # Buttons on the task pages: what each task produced (pipelines/links.py).
    validated.operator.operator_extra_links = links("data_docs", "quarantine")
    specs.operator.operator_extra_links = links("mlflow_search")
    trained.operator.operator_extra_links = links("mlflow_run")
    metrics.operator.operator_extra_links = links("mlflow_run")
    registered.operator.operator_extra_links = links("model_version", "mlflow_run")


training_pipeline()
