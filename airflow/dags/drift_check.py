"""
### drift_check

Daily: did today's traffic still look like what the champion was trained on?

1. **load_window**: the logical date's window of logged predictions (the API's
   prediction log: features, score, model version, feedback labels if any).
2. **load_reference**: the champion's reference profile (a sample of its
   training features and scores, saved with the model at registration).
3. **detect_drift**: Evidently report (numeric features, prediction, text
   descriptors, domain classifier on the text) + PSI per feature. Report HTML
   and JSON are kept (path in the task log) and the drift metrics are logged to
   the MLflow experiment `monitoring`.
4. **check_performance**: with feedback labels in the window, realised
   accuracy / ROC-AUC against the champion's test figures (concept drift).
5. **decide** → **trigger_retrain**: on drift, starts `training_pipeline` with a
   `conf` that says why (metric, value, threshold, report) and which data to use.
   Too little traffic → no decision, said so in the log, no alarm.

Thresholds default to `monitoring/config/drift.yaml`; the `thresholds` Param
overrides any key for one run.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, get_current_context, task

from pipelines.execution import heavy_task

DEFAULT_ARGS = {"retries": 1, "retry_delay": timedelta(seconds=20), "owner": "driftloop"}


@dag(
    dag_id="drift_check",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["driftloop", "monitoring"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
    params={
        "model_name": Param("review-sentiment", type="string", title="Registered model name"),
        "window_start": Param(
            "",
            type="string",
            title="Window start (ISO, optional)",
            description="Empty: the run's data interval (or the last 24 h for manual runs).",
        ),
        "window_end": Param("", type="string", title="Window end (ISO, optional)"),
        "thresholds": Param(
            {},
            type="object",
            title="Threshold overrides",
            description='Any key of monitoring/config/drift.yaml, e.g. {"min_rows": 100}.',
        ),
        "retrain": Param(True, type="boolean", title="Trigger training_pipeline on drift"),
        "retrain_data_path": Param(
            "",
            type="string",
            title="Retraining data",
            description="Where new labelled data lands. Empty (and no extra sources): drift is "
            "reported, nothing is retrained.",
        ),
        "retrain_source": Param("imdb", type="string", title="Retraining data source format"),
        "retrain_extra_sources": Param([], type="array", title="More retraining sources"),
        "retrain_conf": Param(
            {},
            type="object",
            title="Extra training_pipeline conf",
            description='Merged into the retrain conf, e.g. {"n_trials": 4, "families": ["nbsvm"]}.',
        ),
    },
)
def drift_check() -> None:
    @task
    def load_window() -> dict[str, Any]:
        from pipelines.drift import load_window as run

        context = get_current_context()
        return run(
            dict(context["params"]),
            context["run_id"],
            context.get("data_interval_start"),
            context.get("data_interval_end"),
        )

    @task
    def load_reference() -> dict[str, Any]:
        from pipelines.drift import load_reference as run

        context = get_current_context()
        return run(str(context["params"]["model_name"]), context["run_id"])

    @heavy_task("drift")
    def detect_drift(window: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
        from pipelines.drift import detect_drift as run

        return run(window, reference, dict(get_current_context()["params"]["thresholds"]))

    @task
    def check_performance(window: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
        from pipelines.drift import check_performance as run

        return run(window, reference, dict(get_current_context()["params"]["thresholds"]))

    @task.short_circuit
    def decide(drift: dict[str, Any], performance: dict[str, Any]) -> dict[str, Any] | None:
        from pipelines.drift import decide as run

        context = get_current_context()
        return run(drift, performance, dict(context["params"]), context["run_id"])

    window = load_window()
    reference = load_reference()
    drift = detect_drift(window, reference)
    performance = check_performance(window, reference)
    conf = decide(drift, performance)
    trigger = TriggerDagRunOperator(
        task_id="trigger_retrain",
        trigger_dag_id="training_pipeline",
        conf="{{ ti.xcom_pull(task_ids='decide') }}",
        wait_for_completion=False,
    )
    conf >> trigger


drift_check()
