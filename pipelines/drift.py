"""Steps of the `drift_check` DAG.

Each returns a small JSON-able dict; frames travel as Parquet paths inside the
run's lake folder.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipelines.params import INFER
from pipelines.training import run_dir_for

log = logging.getLogger(__name__)

REFERENCE_ARTIFACT = "reference/profile.parquet"
MONITORING_EXPERIMENT = "monitoring"


def resolve_window(
    params: dict[str, Any], start: Any | None, end: Any | None, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """Params override the data interval; a manual run without one looks at the last 24 h."""
    if params.get("window_start") or params.get("window_end"):
        window_end = (
            datetime.fromisoformat(params["window_end"]) if params.get("window_end") else None
        )
        window_start = (
            datetime.fromisoformat(params["window_start"]) if params.get("window_start") else None
        )
        window_end = window_end or (window_start + timedelta(days=1) if window_start else None)
        window_start = window_start or (window_end - timedelta(days=1) if window_end else None)
    elif start is not None and end is not None and end > start:
        window_start, window_end = start, end
    else:
        window_end = now or datetime.now(UTC)
        window_start = window_end - timedelta(days=1)
    assert window_start is not None and window_end is not None
    if window_start.tzinfo is None:
        window_start = window_start.replace(tzinfo=UTC)
    if window_end.tzinfo is None:
        window_end = window_end.replace(tzinfo=UTC)
    return window_start, window_end


def load_window(
    params: dict[str, Any], run_id: str, start: Any | None, end: Any | None
) -> dict[str, Any]:
    from core.usecases import get_use_case
    from serving.prediction_log import read_predictions

    window_start, window_end = resolve_window(params, start, end)
    log.info(
        "load_window: logged predictions of %s from %s to %s",
        params.get("model_name"),
        window_start.isoformat(),
        window_end.isoformat(),
    )
    frame = read_predictions(
        None,
        window_start,
        window_end,
        model_name=params.get("model_name"),
        use_case=get_use_case(params.get("use_case")).name,
    )
    run_dir = run_dir_for(f"drift_{run_id}")
    path = run_dir / "current.parquet"
    frame.to_parquet(path, index=False)
    labelled = int(frame["feedback_label"].notna().sum()) if "feedback_label" in frame else 0
    versions = sorted({str(v) for v in frame.get("model_version", [])})
    log.info(
        "window %s .. %s: %d logged predictions (%d with feedback labels), model versions %s",
        window_start.isoformat(),
        window_end.isoformat(),
        len(frame),
        labelled,
        versions,
    )
    return {
        "current_path": str(path),
        "rows": len(frame),
        "labelled_rows": labelled,
        "window_start": window_start.isoformat(),
        "window_end": window_end.isoformat(),
        "model_versions": versions,
        "run_dir": str(run_dir),
        "use_case": get_use_case(params.get("use_case")).name,
    }


def load_reference(model_name: str, run_id: str) -> dict[str, Any]:
    """The champion's reference profile and test figures (empty when there is no champion)."""
    import mlflow

    from pipelines.links import model_version_url, publish_link
    from training.mlflow_utils import configure

    log.info("load_reference: the reference profile of %s@champion", model_name)
    configure()
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(model_name, "champion")
    except mlflow.exceptions.MlflowException as exc:
        log.warning("no champion for %s (%s): nothing to compare with", model_name, exc)
        return {"available": False, "model_name": model_name}
    run_dir = run_dir_for(f"drift_{run_id}")
    local = mlflow.artifacts.download_artifacts(
        run_id=version.run_id, artifact_path=REFERENCE_ARTIFACT, dst_path=str(run_dir / "reference")
    )
    test_metrics = {
        key.removeprefix("test_"): float(value)
        for key, value in version.tags.items()
        if key.startswith("test_")
    }
    publish_link(
        "model_version",
        model_version_url(model_name, str(version.version)),
        what=f"{model_name} version {version.version}",
    )
    log.info(
        "load_reference done: champion %s v%s, reference profile %s, test figures %s",
        model_name,
        version.version,
        local,
        test_metrics,
    )
    return {
        "available": True,
        "model_name": model_name,
        "version": str(version.version),
        "run_id": version.run_id,
        "profile_path": local,
        "test_metrics": test_metrics,
        "decision_threshold": _served_threshold(version.tags),
    }


def _served_threshold(tags: dict[str, str]) -> float | None:
    """The champion's `decision_threshold` tag: the threshold its served labels and test figures use."""
    try:
        value = float(tags.get("decision_threshold", ""))
    except ValueError:
        return None
    return value if 0.0 < value < 1.0 else None


def _with_champion_threshold(
    overrides: dict[str, Any] | None, reference: dict[str, Any]
) -> dict[str, Any] | None:
    """Threshold overrides, with the champion's own decision threshold unless one is given."""
    threshold = reference.get("decision_threshold")
    if threshold is None or "decision_threshold" in (overrides or {}):
        return overrides or None
    return {"decision_threshold": threshold, **(overrides or {})}


def detect_drift(
    window: dict[str, Any],
    reference: dict[str, Any],
    overrides: dict[str, Any],
    use_case: str | None = None,
) -> dict[str, Any]:
    import pandas as pd

    from core.usecases import get_use_case
    from monitoring.config import load_thresholds
    from monitoring.drift import INSUFFICIENT_DATA, check_drift
    from monitoring.reference import load_profile

    if not reference.get("available"):
        log.info("detect_drift: no champion to compare with: insufficient_data, no alarm")
        return {"decision": INSUFFICIENT_DATA, "reasons": [], "detail": "no champion"}
    uc = get_use_case(use_case)
    thresholds = load_thresholds(
        _with_champion_threshold(overrides, reference), path=uc.config_path("drift")
    )
    log.info(
        "detect_drift (use case %s, %s): %d logged predictions vs champion v%s's reference "
        "profile; checks %s; threshold overrides %s",
        uc.name,
        uc.kind,
        window["rows"],
        reference.get("version"),
        ", ".join(thresholds.enabled_checks(uc.kind)),
        overrides or "none",
    )
    current = pd.read_parquet(window["current_path"])
    out_dir = Path(window["run_dir"]) / "report"
    result = check_drift(
        load_profile(reference["profile_path"]), current, thresholds, out_dir, use_case=uc.name
    )
    outcome = result.to_dict()
    log.info("drift report: %s (JSON: %s)", result.report_html, result.report_json)
    for warning in result.warnings:
        log.warning(
            "drift check warning: %s fired on its own (value %s, threshold %s: %s); the day "
            "is %s, so nothing is retrained for it",
            warning["metric"],
            warning["value"],
            warning["threshold"],
            warning["detail"],
            result.decision,
        )
    outcome["mlflow_run_id"] = _log_monitoring_run(window, reference, outcome)
    _publish_report_link(outcome)
    log.info("detect_drift done: %s; reasons: %s", result.decision, result.reasons)
    return outcome


def _publish_report_link(outcome: dict[str, Any]) -> None:
    """The report as logged to the MLflow `monitoring` run (the UI renders the HTML)."""
    import mlflow

    from pipelines.links import mlflow_run_url, publish_link

    run_id = outcome["mlflow_run_id"]
    experiment_id = mlflow.MlflowClient().get_run(run_id).info.experiment_id
    html = outcome.get("report_html")
    artifact = f"drift/{Path(html).name}" if html else None
    publish_link("drift_report", mlflow_run_url(run_id, experiment_id, artifact), what=str(html))


def _flat_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat_metrics(value, f"{name}."))
        elif isinstance(value, bool) or (isinstance(value, int | float) and value == value):
            flat[name] = float(value)
    return flat


def _log_monitoring_run(
    window: dict[str, Any], reference: dict[str, Any], outcome: dict[str, Any]
) -> str:
    import mlflow

    from training.mlflow_utils import configure, get_or_create_experiment

    configure()
    experiment_id = get_or_create_experiment(MONITORING_EXPERIMENT)
    name = f"drift {window['window_start'][:10]}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        mlflow.set_tags(
            {
                "decision": outcome["decision"],
                "model_name": reference.get("model_name", ""),
                "champion_version": reference.get("version", ""),
                "window_start": window["window_start"],
                "window_end": window["window_end"],
                "warnings": warning_tag(outcome.get("warnings") or []),
            }
        )
        mlflow.log_metric("rows", window["rows"])
        metrics = _flat_metrics(outcome.get("metrics", {}))
        # MLflow metric names allow a limited character set.
        safe = {k.replace("[", "_").replace("]", "_"): v for k, v in metrics.items()}
        if safe:
            mlflow.log_metrics(safe)
        for key in ("report_html", "report_json"):
            if outcome.get(key) and Path(outcome[key]).exists():
                mlflow.log_artifact(outcome[key], artifact_path="drift")
        return str(run.info.run_id)


def warning_tag(warnings: list[dict[str, Any]]) -> str:
    """The checks that fired without making the day drift, with their numbers ("" if none)."""
    return "; ".join(
        f"{w['metric']}={w['value']:.4g} (threshold {w['threshold']})"
        if isinstance(w.get("value"), int | float)
        else f"{w['metric']}={w.get('value')} (threshold {w.get('threshold')})"
        for w in warnings
    )


def check_performance(
    window: dict[str, Any], reference: dict[str, Any], overrides: dict[str, Any]
) -> dict[str, Any]:
    import pandas as pd

    from monitoring.config import load_thresholds
    from monitoring.performance import realised_performance

    log.info(
        "check_performance: realised quality on %d feedback labels vs champion v%s's test figures",
        window["labelled_rows"],
        reference.get("version", "-"),
    )
    if not reference.get("available") or window["labelled_rows"] == 0:
        log.info("no feedback labels in the window: realised performance not assessed")
        return {"status": "insufficient_labels", "concept_drift": False, "labelled_rows": 0}
    from core.usecases import get_use_case

    current = pd.read_parquet(window["current_path"])
    drift_yaml = get_use_case(window.get("use_case")).config_path("drift")
    outcome = realised_performance(
        current["feedback_label"],
        current["score"],
        reference["test_metrics"],
        load_thresholds(_with_champion_threshold(overrides, reference), path=drift_yaml),
    )
    log.info("realised performance on %d labels: %s", window["labelled_rows"], outcome)
    return outcome


def check_late_labels(
    window: dict[str, Any],
    reference: dict[str, Any],
    overrides: dict[str, Any],
    use_case: str | None = None,
) -> dict[str, Any]:
    """Realised quality per prediction day over the label-lag window, and the CBPE estimate.

    Every day of the look-back window is recomputed from the prediction log, so a
    label that landed since yesterday's run updates its prediction day's figures.
    """
    import pandas as pd

    from core.usecases import get_use_case
    from monitoring.config import load_thresholds
    from monitoring.late_labels import check_late_labels as check
    from monitoring.late_labels import load_config
    from serving.prediction_store import read_predictions

    if not reference.get("available"):
        log.info("check_late_labels: no champion to compare with: nothing assessed")
        return {"status": "no_champion", "retrain": False, "days": [], "reasons": []}
    config = load_config()
    end = datetime.fromisoformat(window["window_end"])
    start = end - timedelta(days=config.label_lag_days)
    log.info(
        "check_late_labels: predictions of %s from %s to %s (label-lag window %d days), "
        "latest feedback label per request",
        reference["model_name"],
        start.isoformat(),
        end.isoformat(),
        config.label_lag_days,
    )
    uc = get_use_case(use_case)
    frame = read_predictions(None, start, end, model_name=reference["model_name"], use_case=uc.name)
    outcome = check(
        frame,
        # Only scores and labels are used: the profile's feature columns differ by use case.
        pd.read_parquet(reference["profile_path"]),
        reference["test_metrics"],
        load_thresholds(
            _with_champion_threshold(overrides, reference), path=uc.config_path("drift")
        ),
        config,
    )
    for day in outcome["days"]:
        log.info(
            "prediction day %s: %d predictions, %d labelled (coverage %.1f%%%s); realised %s; "
            "estimated (CBPE) %s",
            day["day"],
            day["predictions"],
            day["labelled"],
            100 * day["coverage"],
            ", counted" if day["covered"] else "",
            _rounded(day["realised"]),
            _rounded(day["estimated"]),
        )
    pooled = outcome["pooled"]
    log.info(
        "late labels: %d covered day(s) %s, %d labels pooled: accuracy %s, ROC-AUC %s vs "
        "champion test %s / %s: %s%s",
        len(outcome["covered_days"]),
        outcome["covered_days"],
        pooled["n_labels"],
        _rounded(pooled["accuracy"]),
        _rounded(pooled["roc_auc"]),
        _rounded(pooled["champion_accuracy"]),
        _rounded(pooled["champion_roc_auc"]),
        "RETRAIN: realised quality dropped below the allowed" if outcome["retrain"] else "ok",
        "; " + "; ".join(pooled["notes"]) if pooled["notes"] else "",
    )
    outcome["window_start"], outcome["window_end"] = start.isoformat(), end.isoformat()
    outcome["mlflow_run_id"] = _log_late_labels_run(outcome, reference)
    return outcome


def _rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return round(value, 4) if isinstance(value, float) else value


def _log_late_labels_run(outcome: dict[str, Any], reference: dict[str, Any]) -> str:
    """Per prediction day: realised, estimated, coverage as MLflow metrics stepped by day."""
    import mlflow

    from training.mlflow_utils import configure, get_or_create_experiment

    configure()
    experiment_id = get_or_create_experiment(MONITORING_EXPERIMENT)
    name = f"late labels {outcome['window_end'][:10]}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        mlflow.set_tags(
            {
                "check": "late_labels",
                "model_name": reference.get("model_name", ""),
                "champion_version": reference.get("version", ""),
                "window_start": outcome["window_start"],
                "window_end": outcome["window_end"],
                "retrain": str(outcome["retrain"]).lower(),
                "covered_days": ",".join(outcome["covered_days"]),
            }
        )
        for day in outcome["days"]:
            moment = datetime.fromisoformat(day["day"]).replace(tzinfo=UTC)
            step = int(moment.timestamp() // 86_400)
            stamp = int(moment.timestamp() * 1000)
            values = {
                "label_coverage": day["coverage"],
                "predictions": day["predictions"],
                "labelled": day["labelled"],
                **{f"realised_{k}": v for k, v in day["realised"].items()},
                **{f"estimated_{k}": v for k, v in day["estimated"].items()},
            }
            for key, value in values.items():
                if value is not None:
                    mlflow.log_metric(key, float(value), step=step, timestamp=stamp)
        pooled = {
            f"pooled_{k}": float(outcome["pooled"][k])
            for k in ("accuracy", "roc_auc", "n_labels")
            if outcome["pooled"].get(k) is not None
        }
        if pooled:
            mlflow.log_metrics(pooled)
        mlflow.log_dict(outcome, "late_labels.json")
        return str(run.info.run_id)


def _first_reason(*outcomes: dict[str, Any]) -> dict[str, Any]:
    reasons = [r for outcome in outcomes for r in outcome.get("reasons") or []]
    return reasons[0] if reasons else {}


def decide(
    drift: dict[str, Any],
    performance: dict[str, Any],
    params: dict[str, Any],
    run_id: str,
    late: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The training conf when retraining is due, else None (skips the trigger).

    Every figure of the day and the decision also go to the Pushgateway when
    one is configured (monitoring.pipeline_metrics).
    """
    from monitoring.pipeline_metrics import push_drift_outcome

    late = late or {}
    log.info(
        "decide: drift %s, concept drift %s, late-label quality drop %s; retrain %s with data "
        "%s + %d extra source(s)",
        drift.get("decision"),
        bool(performance.get("concept_drift")),
        bool(late.get("retrain")),
        "on" if params.get("retrain", True) else "off",
        params.get("retrain_data_path") or "(none)",
        len(params.get("retrain_extra_sources") or []),
    )
    conf = _decide_retrain(drift, performance, params, run_id, late)
    push_drift_outcome(drift, performance, conf is not None, params, run_id, late)
    return conf


def _build_retrain_data(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The default retraining data: snapshot + labelled predictions + landing folder."""
    from core.usecases import DEFAULT_USE_CASE, get_use_case
    from monitoring.retrain_data import build_retrain_data

    use_case = str(params.get("use_case") or DEFAULT_USE_CASE)
    model_name = str(params.get("model_name") or get_use_case(use_case).model_name)
    log.info(
        "no retraining data Param: building it from %s's training snapshot, the prediction "
        "log's feedback labels and the landing folder of use case %s",
        model_name,
        use_case,
    )
    return build_retrain_data(model_name, use_case, run_dir_for(f"drift_{run_id}") / "retrain")


def _decide_retrain(
    drift: dict[str, Any],
    performance: dict[str, Any],
    params: dict[str, Any],
    run_id: str,
    late: dict[str, Any],
) -> dict[str, Any] | None:
    drifted = drift.get("decision") == "drift"
    concept = bool(performance.get("concept_drift"))
    late_drop = bool(late.get("retrain"))
    if not drifted and not concept and not late_drop:
        if drift.get("decision") == "insufficient_data":
            log.info(
                "too little data for a decision (%s): no retraining, no alarm",
                drift.get("detail") or drift.get("reasons"),
            )
        else:
            log.info("no drift: the champion stays")
        return None
    first = _first_reason(drift, performance, late)
    kind = "data drift" if drifted else "concept drift" if concept else "late-label quality drop"
    reason = (
        f"drift_check {run_id}: {kind}; {first.get('metric')}={first.get('value')} "
        f"(threshold {first.get('threshold')}); report {drift.get('report_html')}"
    )
    if not params.get("retrain", True):
        log.warning("%s — retraining disabled by the retrain Param", reason)
        return None
    data: dict[str, Any] = {
        "data_path": params.get("retrain_data_path", ""),
        "source": params.get("retrain_source", "imdb"),
        "extra_sources": list(params.get("retrain_extra_sources") or []),
    }
    retrain_data: dict[str, Any] | None = None
    if not params.get("retrain_data_path") and not params.get("retrain_extra_sources"):
        # No data Param: the champion's training snapshot + new labelled production rows.
        retrain_data = _build_retrain_data(params, run_id)
        if not retrain_data["new_rows"]:
            log.warning(
                "%s — but nothing new is labelled since the champion's training snapshot "
                "(no new feedback labels in the prediction log, no new file in %s): drift "
                "reported, no retrain started",
                reason,
                retrain_data["landing_dir"],
            )
            return None
        data = {"data_path": "", "source": INFER, "extra_sources": retrain_data["sources"]}
    conf: dict[str, Any] = {
        "reason": reason,
        "use_case": params.get("use_case"),
        "model_name": params.get("model_name", "review-sentiment"),
        **data,
        "trigger": {
            "dag_run": run_id,
            "kind": kind,
            "reasons": [
                *(drift.get("reasons") or []),
                *(performance.get("reasons") or []),
                *(late.get("reasons") or []),
            ],
            "report_html": drift.get("report_html"),
            "report_json": drift.get("report_json"),
            "monitoring_run_id": drift.get("mlflow_run_id"),
        },
    }
    if retrain_data is not None:
        conf["trigger"]["retrain_data"] = {
            k: retrain_data[k]
            for k in ("parts", "rows_by_kind", "total_rows", "new_rows", "snapshot", "summary_path")
        }
    conf = {**dict(params.get("retrain_conf") or {}), **conf}
    log.info("retraining: %s", reason)
    return conf
