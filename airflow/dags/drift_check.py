"""
### drift_check

Daily: did today's traffic still look like what the champion was trained on?

The `use_case` Param picks the use case (core/usecases.yaml): its champion,
its features and the drift checks that fit its kind.

1. **load_window**: the logical date's window of logged predictions (the API's
   prediction log: features, score, model version, feedback labels if any).
2. **load_reference**: the champion's reference profile (a sample of its
   training features and scores, saved with the model at registration).
3. **detect_drift**: the use case's checks (its drift.yaml `checks`; by kind:
   tabular = Evidently drift per feature column + PSI per feature + prediction
   drift; text adds the text descriptors and the domain classifier on the
   text). Report HTML and JSON are kept (path in the task log) and the drift
   metrics are logged to the MLflow experiment `monitoring`.
4. **check_performance**: with feedback labels in the window, realised
   accuracy / ROC-AUC against the champion's test figures (concept drift).
5. **check_late_labels**: labels arrive days after the prediction. Over the
   label-lag window (monitoring/config/late_labels.yaml) every prediction day's
   realised accuracy / ROC-AUC and label coverage are recomputed from the log
   (a late label updates its own day), beside a label-free CBPE estimate
   (monitoring/cbpe.py); pooled realised quality of the days with enough
   coverage dropping below the champion's test figures is a reason to retrain.
   Per-day figures go to the MLflow `monitoring` run and the Pushgateway.
6. **decide** → **trigger_retrain**: on drift (or a late-label quality drop), starts `training_pipeline` with a
   `conf` that says why (metric, value, threshold, report) and which data to use:
   the data Params when set, else the champion's training snapshot + labelled
   production rows + the landing folder, each part with rows and sha256
   (monitoring/retrain_data.py); nothing new labelled → no retrain, said in the log.
   Too little traffic → no decision, said so in the log, no alarm.
7. **regate_challenger** (independent of the steps above): the shadow phase's daily
   verdict (training/regate.py). When the use case's challenger awaits shadow traffic
   (gate.yaml `live.hold_for_shadow`), its labelled shadow-scored rows next to the champion
   decide: promoted, held back (alias removed, shadow scoring stops), or still waiting
   (held back after `live.max_wait_days`). No such challenger: said so in the log, nothing
   changes.

Thresholds default to the use case's drift.yaml (reviews:
`monitoring/config/drift.yaml`, credit: `usecases/credit/drift.yaml`); the `thresholds` Param
overrides any key for one run. A bad value (a window end before its start, a
retraining file that does not exist, an unknown threshold key) fails
**load_window** at once with one line naming the Param.

Task pages carry buttons: **load_reference** → the champion's model version,
**detect_drift** → the Evidently report (rendered in MLflow's `monitoring`
run), **trigger_retrain** → the `training_pipeline` run it started.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, get_current_context, task

from pipelines.execution import heavy_task, lake_task
from pipelines.lake import staged_task
from pipelines.links import links
from pipelines.params import INFER, params_markdown, source_names, use_case_choices

ADVANCED = "Advanced: thresholds and the retrain's search"
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
        description="Which registered use case (core/usecases.yaml) to check: its features, "
        "its drift checks and thresholds (by kind: text or tabular) and its champion.",
    ),
    "model_name": Param(
        None,
        type=["null", "string"],
        title="Registered model name",
        description="Whose champion to compare with. Empty: the use case's model "
        "(review-sentiment, credit-default).",
    ),
    "window_start": Param(
        None,
        type=["null", "string"],
        title="Window start",
        description="ISO 8601 date-time, e.g. 2026-11-30T00:00:00+00:00 (no offset = UTC). "
        "Empty: the run's data interval; a manual run without one looks at the 24 h "
        "before Window end (or before now).",
    ),
    "window_end": Param(
        None,
        type=["null", "string"],
        title="Window end",
        description="ISO 8601 date-time after Window start. Empty: 24 h after Window "
        "start, or the data interval's end, or now.",
    ),
    "retrain": Param(
        True,
        type="boolean",
        title="Trigger training_pipeline on drift",
        description="Off: drift is reported but nothing is retrained.",
    ),
    "retrain_data_path": Param(
        None,
        type=["null", "string"],
        title="Retraining data file",
        description="Absolute path of a labelled file to retrain on; passed to "
        "training_pipeline as its Data file. Empty (and no extra retraining sources): "
        "the champion's training snapshot + labelled production rows (feedback) + new "
        "files in DRIFTLOOP_HOME/landing/<use case>/; nothing new labelled: no retrain.",
    ),
    "retrain_source": Param(
        INFER,
        type="string",
        enum=[INFER, *source_names()],
        values_display={
            INFER: "Infer from the file name",
            **{name: name for name in source_names()},
        },
        title="Retraining data source format",
        description="contracts/sources.yaml entry of the retraining data file (an entry "
        "of the chosen use case).",
    ),
    "retrain_extra_sources": Param(
        None,
        type=["null", "array"],
        items={"type": "object"},
        title="Extra retraining sources",
        description='More labelled files, as a JSON list: [{"path": "/data/kindle.csv.gz", '
        '"source": "kindle"}]. Empty: none.',
    ),
    # ... then the thresholds and the retrain's search settings.
    "thresholds": Param(
        None,
        type=["null", "object"],
        title="Threshold overrides",
        description="Any key of the use case's drift.yaml (reviews: "
        "monitoring/config/drift.yaml) for this run, e.g. "
        '{"min_rows": 100}. Empty: the file\'s values.',
        section=ADVANCED,
    ),
    "retrain_conf": Param(
        None,
        type=["null", "object"],
        title="Extra training_pipeline Params",
        description='Merged into the retrain\'s Params, e.g. {"n_trials": 4, '
        '"families": ["nbsvm"]}. Empty: training_pipeline\'s defaults.',
        section=ADVANCED,
    ),
}


def run_params(check_files: bool = False) -> dict[str, Any]:
    """This run's Params, checked and normalised (pipelines.params).

    A bad value fails the task at once with one line naming the Param; no
    retry, since the same value would fail again.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from pipelines.params import ParamError, check_drift_params

    try:
        return check_drift_params(get_current_context()["params"], check_files=check_files)
    except ParamError as exc:
        logging.getLogger(__name__).error("%s", exc)
        raise AirflowFailException(str(exc)) from None


@dag(
    dag_id="drift_check",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["driftloop", "monitoring"],
    doc_md=f"{__doc__}\n{params_markdown(PARAMS)}",
    render_template_as_native_obj=True,
    params=PARAMS,
)
def drift_check() -> None:
    @lake_task
    def load_window() -> dict[str, Any]:
        from pipelines.drift import load_window as run

        context = get_current_context()
        return run(
            run_params(check_files=True),
            context["run_id"],
            context.get("data_interval_start"),
            context.get("data_interval_end"),
        )

    @lake_task
    def load_reference() -> dict[str, Any]:
        from pipelines.drift import load_reference as run

        return run(str(run_params()["model_name"]), get_current_context()["run_id"])

    @heavy_task("drift")
    def detect_drift(window: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
        from pipelines.drift import detect_drift as run

        params = run_params()
        return run(window, reference, params["thresholds"], params["use_case"])

    @lake_task
    def check_performance(window: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
        from pipelines.drift import check_performance as run

        return run(window, reference, run_params()["thresholds"])

    @lake_task
    def check_late_labels(window: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
        from pipelines.drift import check_late_labels as run

        params = run_params()
        return run(window, reference, params["thresholds"], params["use_case"])

    @task.short_circuit
    @staged_task
    def decide(
        drift: dict[str, Any], performance: dict[str, Any], late: dict[str, Any]
    ) -> dict[str, Any] | None:
        from pipelines.drift import decide as run

        return run(drift, performance, run_params(), get_current_context()["run_id"], late)

    @task
    def regate_challenger() -> dict[str, Any]:
        from training.regate import regate_challenger as run

        params = run_params()
        return run(params["use_case"], params["model_name"])

    regate_challenger()
    window = load_window()
    reference = load_reference()
    drift = detect_drift(window, reference)
    performance = check_performance(window, reference)
    late = check_late_labels(window, reference)
    conf = decide(drift, performance, late)
    trigger = TriggerDagRunOperator(
        task_id="trigger_retrain",
        trigger_dag_id="training_pipeline",
        conf="{{ ti.xcom_pull(task_ids='decide') }}",
        wait_for_completion=False,
    )
    conf >> trigger

    # Buttons on the task pages: what each task produced (pipelines/links.py).
    reference.operator.operator_extra_links = links("model_version")
    drift.operator.operator_extra_links = links("drift_report")


drift_check()
