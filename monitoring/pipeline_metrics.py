"""What the drift check and the training pipeline push to the Pushgateway.

Pure translations from the dicts the pipeline steps already return into
`Sample`s, plus one `push_*` per call site, so each pipeline step needs a
single line. Metric names are what the alert rules in
`deploy/prometheus/rules/` and the Grafana dashboards query; renaming one
means changing them too (the rule and panel tests catch a mismatch).

Groups (see `monitoring.push`): `driftloop_drift_check` and
`driftloop_training` keyed by `use_case`; `driftloop_registry` keyed by
`model`, written by the gate and by a rollback, so it always says which
version holds `champion`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from monitoring.push import Sample, push

DRIFT_JOB = "driftloop_drift_check"
TRAINING_JOB = "driftloop_training"
REGISTRY_JOB = "driftloop_registry"
DEFAULT_USE_CASE = "reviews"
DECISIONS = ("drift", "no_drift", "insufficient_data")
PERFORMANCE_METRICS = ("accuracy", "roc_auc")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def _run_info(prefix: str, dag_run: str, **labels: str) -> Sample:
    return Sample(
        f"{prefix}_run_info",
        1.0,
        "The DAG run whose figures this group holds.",
        {"dag_run": dag_run, **labels},
    )


def _finished(prefix: str) -> Sample:
    return Sample(
        f"{prefix}_last_push_timestamp_seconds",
        time.time(),
        "Unix time these figures were pushed.",
    )


def drift_samples(
    drift: Mapping[str, Any],
    performance: Mapping[str, Any],
    retrain: bool,
    dag_run: str,
    model_name: str,
) -> list[Sample]:
    """Each check's score/threshold/verdict, realised performance, label coverage, decision."""
    decision = str(drift.get("decision") or "insufficient_data")
    samples = [
        _run_info("driftloop_drift", dag_run, model=model_name),
        _finished("driftloop_drift"),
        Sample(
            "driftloop_retrain_triggered",
            float(retrain),
            "1 when this drift check triggered training_pipeline.",
        ),
    ]
    for name in DECISIONS:
        samples.append(
            Sample(
                "driftloop_drift_decision",
                float(name == decision),
                "1 for the decision of the latest drift check (drift, no_drift, "
                "insufficient_data).",
                {"decision": name},
            )
        )
    for check, outcome in sorted((drift.get("checks") or {}).items()):
        labels = {"check": str(check)}
        for suffix, key, text in (
            ("score", "value", "The check's statistic on the latest window."),
            ("threshold", "threshold", "The value at which the check fires."),
            ("fired", "fired", "1 when the check fired on the latest window."),
        ):
            value = _number(outcome.get(key))
            if value is not None:
                samples.append(Sample(f"driftloop_drift_check_{suffix}", value, text, labels))
    samples.extend(warning_samples(drift))
    combined = (drift.get("metrics") or {}).get("combined") or {}
    for key, name, text in (
        ("score", "driftloop_drift_combined_score", "Combined z of the checks' statistics."),
        ("threshold", "driftloop_drift_combined_threshold", "Combined z at which a day is drift."),
    ):
        value = _number(combined.get(key))
        if value is not None:
            samples.append(Sample(name, value, text))
    for key, name, text in (
        ("votes", "driftloop_drift_votes", "Weighted votes of the checks that fired."),
        ("n_current", "driftloop_drift_window_rows", "Logged predictions in the window."),
    ):
        value = _number(drift.get(key, (drift.get("metrics") or {}).get(key)))
        if value is not None:
            samples.append(Sample(name, value, text))
    samples.extend(performance_samples(performance, _number(drift.get("n_current"))))
    return samples


def warning_samples(drift: Mapping[str, Any]) -> list[Sample]:
    """Checks that fired on a day that is not drift (e.g. a prior shift): never dropped.

    `driftloop_drift_check_warning{check}` is 1 for each such check (0 for the
    others), `driftloop_drift_warnings` counts them.
    """
    warned = {str(w.get("metric")) for w in drift.get("warnings") or []}
    checks = sorted(set(drift.get("checks") or {}) | warned)
    samples = [
        Sample(
            "driftloop_drift_check_warning",
            float(check in warned),
            "1 when the check fired but the day's decision is not drift (a warning).",
            {"check": check},
        )
        for check in checks
    ]
    samples.append(
        Sample(
            "driftloop_drift_warnings",
            float(len(warned)),
            "Checks that fired on the latest window without making it drift.",
        )
    )
    return samples


def performance_samples(performance: Mapping[str, Any], window_rows: float | None) -> list[Sample]:
    """Realised accuracy/ROC-AUC against the champion's test figures, and label coverage.

    `performance` is `monitoring.performance.realised_performance` output plus
    the allowed drops (`max_accuracy_drop`, `max_roc_auc_drop`). The label-free
    estimate and the per-prediction-day figures are `late_label_samples`.
    """
    labelled = _number(performance.get("n_labels")) or 0.0
    samples = [
        Sample(
            "driftloop_labelled_rows",
            labelled,
            "Predictions in the window that have a feedback label.",
        ),
        Sample(
            "driftloop_concept_drift",
            float(bool(performance.get("concept_drift"))),
            "1 when realised performance fell further below the champion's test figures "
            "than allowed.",
        ),
    ]
    if window_rows:
        samples.append(
            Sample(
                "driftloop_label_coverage_ratio",
                labelled / window_rows,
                "Share of the window's predictions that have a feedback label.",
            )
        )
    maxima = {"accuracy": "max_accuracy_drop", "roc_auc": "max_roc_auc_drop"}
    for metric in PERFORMANCE_METRICS:
        labels = {"metric": metric}
        for name, value, text in (
            (
                "driftloop_realised_performance",
                performance.get(metric),
                "Realised quality on the window's labelled predictions.",
            ),
            (
                "driftloop_champion_test_performance",
                performance.get(f"champion_{metric}"),
                "The champion's figure on its held-out test split.",
            ),
            (
                "driftloop_realised_performance_drop",
                performance.get(f"{metric}_drop"),
                "Champion test figure minus realised figure.",
            ),
            (
                "driftloop_realised_performance_max_drop",
                performance.get(maxima[metric]),
                "The largest drop allowed before concept drift is called.",
            ),
        ):
            number = _number(value)
            if number is not None:
                samples.append(Sample(name, number, text, labels))
    return samples


def late_label_samples(late: Mapping[str, Any]) -> list[Sample]:
    """Per prediction day over the label-lag window, the pooled verdict, the CBPE estimate.

    `late` is `monitoring.late_labels.check_late_labels` output. The per-day
    series carry a `prediction_day` label (one per day of the window, replaced
    with the group each run); the alert rules read the latest day's estimate
    and the pooled verdict.
    """
    if not late.get("days"):
        return []
    pooled = late.get("pooled") or {}
    samples = [
        Sample(
            "driftloop_late_label_retrain",
            float(bool(late.get("retrain"))),
            "1 when realised quality over the days with enough label coverage fell further "
            "below the champion's test figures than allowed.",
        ),
        Sample(
            "driftloop_late_label_covered_days",
            float(len(late.get("covered_days") or [])),
            "Prediction days of the label-lag window with enough label coverage to count.",
        ),
    ]
    for day in late["days"]:
        labels = {"prediction_day": str(day["day"])}
        samples.append(
            Sample(
                "driftloop_prediction_day_label_coverage_ratio",
                float(day["coverage"]),
                "Share of a prediction day's predictions that have a feedback label so far.",
                labels,
            )
        )
        for kind in ("realised", "estimated"):
            for metric, value in (day.get(kind) or {}).items():
                number = _number(value)
                if number is not None:
                    samples.append(
                        Sample(
                            f"driftloop_prediction_day_{kind}_performance",
                            number,
                            f"{kind.capitalize()} quality of a prediction day's predictions "
                            "(estimated: CBPE, from the scores alone).",
                            {**labels, "metric": metric},
                        )
                    )
    for metric in PERFORMANCE_METRICS:
        labels = {"metric": metric}
        for name, value, text in (
            (
                "driftloop_late_label_realised_performance",
                pooled.get(metric),
                "Realised quality pooled over the covered days of the label-lag window.",
            ),
            (
                "driftloop_late_label_performance_drop",
                pooled.get(f"{metric}_drop"),
                "Champion test figure minus the pooled late-label figure.",
            ),
            (
                "driftloop_estimated_performance",
                (late.get("estimated") or {}).get(metric),
                "CBPE estimate for the latest prediction day (no labels needed).",
            ),
            (
                "driftloop_estimated_performance_drop",
                (late.get("estimated_drop") or {}).get(metric),
                "Champion test figure minus the CBPE estimate for the latest prediction day.",
            ),
        ):
            number = _number(value)
            if number is not None:
                samples.append(Sample(name, number, text, labels))
    return samples


def push_drift_outcome(
    drift: Mapping[str, Any],
    performance: Mapping[str, Any],
    retrain: bool,
    params: Mapping[str, Any],
    dag_run: str,
    late: Mapping[str, Any] | None = None,
) -> bool:
    """The drift check's call site: push everything the day decided."""
    from monitoring.config import load_thresholds

    use_case = str(params.get("use_case") or DEFAULT_USE_CASE)
    model = str(params.get("model_name") or "")
    thresholds = load_thresholds(dict(params.get("thresholds") or {}) or None)
    limits = {
        "max_accuracy_drop": thresholds.max_accuracy_drop,
        "max_roc_auc_drop": thresholds.max_roc_auc_drop,
    }
    samples = drift_samples(drift, {**limits, **performance}, retrain, dag_run, model)
    samples.extend(late_label_samples(late or {}))
    return push(DRIFT_JOB, {"use_case": use_case}, samples, replace=True)


def validation_samples(report: Mapping[str, Any]) -> list[Sample]:
    read = _number(report.get("rows_read")) or 0.0
    quarantined = _number(report.get("rows_quarantined")) or 0.0
    samples = [
        Sample("driftloop_training_rows_read", read, "Raw rows read by validation."),
        Sample("driftloop_training_rows_quarantined", quarantined, "Rows validation quarantined."),
    ]
    if read:
        samples.append(
            Sample(
                "driftloop_training_quarantine_ratio",
                quarantined / read,
                "Share of the rows read that validation quarantined.",
            )
        )
    return samples


def push_validation(report: Mapping[str, Any], dag_run: str, use_case: str | None = None) -> bool:
    """The validate task's call site; the run's first push, so it resets the group."""
    samples = [*validation_samples(report), _run_info("driftloop_training", dag_run)]
    return push(TRAINING_JOB, _training_group(use_case), samples, replace=True)


def push_features_written(stats: Mapping[str, Any], use_case: str | None = None) -> bool:
    written = _number(stats.get("rows_written"))
    if written is None:
        return False
    sample = Sample("driftloop_training_rows_written", written, "Feature rows Spark wrote.")
    return push(TRAINING_JOB, _training_group(use_case), [sample])


def search_samples(leaderboard: Iterable[Mapping[str, Any]]) -> list[Sample]:
    """Best validation score, trials and search seconds per model family."""
    samples: list[Sample] = []
    for row in leaderboard:
        labels = {"family": str(row.get("family"))}
        for name, key, text in (
            (
                "driftloop_search_best_validation_score",
                "best_value",
                "Best validation metric the family's study reached.",
            ),
            ("driftloop_search_trials", "n_trials", "Trials the family's study ran."),
            ("driftloop_search_trials_complete", "n_complete", "Trials that completed."),
            ("driftloop_search_trials_pruned", "n_pruned", "Trials pruned early."),
            ("driftloop_search_duration_seconds", "elapsed_s", "Wall time of the family's study."),
        ):
            value = _number(row.get(key))
            if value is not None:
                samples.append(Sample(name, value, text, labels))
    return samples


def push_search(best: Mapping[str, Any], use_case: str | None = None) -> bool:
    """The refit task's call site: the leaderboard of the search."""
    samples = search_samples(best.get("leaderboard") or [])
    return push(TRAINING_JOB, _training_group(use_case), samples)


def gate_samples(result: Mapping[str, Any], holds: int) -> list[Sample]:
    """The gate decision with both scores, and how many candidates in a row it held back."""
    decision = result.get("decision") or {}
    samples = [
        Sample(
            "driftloop_gate_promoted",
            float(bool(result.get("promoted"))),
            "1 when the gate promoted the latest candidate.",
        ),
        Sample(
            "driftloop_gate_consecutive_holds",
            float(holds),
            "Candidates in a row (latest first) the gate held back.",
        ),
        _finished("driftloop_training"),
    ]
    for role in ("challenger", "champion"):
        value = _number(decision.get(f"{role}_value"))
        if value is not None:
            samples.append(
                Sample(
                    "driftloop_gate_score",
                    value,
                    "Gate metric on the shared test split, by role.",
                    {"role": role},
                )
            )
    checks = decision.get("checks") or []
    for check in checks:
        if check.get("scope") != "overall":
            continue
        for role in ("challenger", "champion"):
            value = _number(check.get(role))
            if value is not None:
                samples.append(
                    Sample(
                        "driftloop_gate_metric_score",
                        value,
                        "Every gated metric overall on the shared test split, by role "
                        "(threshold metrics at each model's own decision threshold).",
                        {"role": role, "metric": str(check.get("metric"))},
                    )
                )
    if checks:
        failed = sum(1 for c in checks if c.get("verdict") in ("regressed", "short_of_min"))
        samples.append(
            Sample(
                "driftloop_gate_failed_checks",
                float(failed),
                "Gate checks (metric x overall/segment) the latest candidate failed.",
            )
        )
    return samples


def champion_samples(model: str, version: str) -> list[Sample]:
    return [
        Sample(
            "driftloop_registry_champion_info",
            1.0,
            "The version holding the champion alias in the registry.",
            {"model": model, "version": str(version)},
        ),
        Sample(
            "driftloop_registry_champion_changed_timestamp_seconds",
            time.time(),
            "Unix time the champion alias was last set by the gate or a rollback.",
            {"model": model},
        ),
    ]


def consecutive_holds(model_name: str) -> int:
    """Latest versions in a row whose gate said no (a version without a gate verdict stops it)."""
    from training import mlflow_utils

    versions = mlflow_utils.client().search_model_versions(f"name='{model_name}'")
    held = 0
    for version in sorted(versions, key=lambda v: int(v.version), reverse=True):
        verdict = (version.tags or {}).get("gate.promote")
        if verdict != "false":
            break
        held += 1
    return held


def push_gate(result: Mapping[str, Any], model_name: str, use_case: str | None = None) -> bool:
    """The register task's call site: gate decision, hold streak and the champion version."""
    samples = gate_samples(result, consecutive_holds(model_name))
    pushed = push(TRAINING_JOB, _training_group(use_case), samples)
    if result.get("promoted") and result.get("champion_version"):
        push_champion(model_name, str(result["champion_version"]))
    return pushed


def push_champion(model_name: str, version: str) -> bool:
    """Record in the gateway which version holds `champion` (gate promotion or rollback)."""
    return push(REGISTRY_JOB, {"model": model_name}, champion_samples(model_name, version))


def _training_group(use_case: str | None) -> dict[str, str]:
    return {"use_case": use_case or DEFAULT_USE_CASE}
