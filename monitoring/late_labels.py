"""Realised performance per prediction day as late labels arrive, beside a label-free estimate.

Feedback for a prediction made on day D often lands days later. Each check
recomputes every prediction day of a look-back window (`label_lag_days`) from
the prediction log, with the latest label per request, so a label that arrives
on day D+5 updates day D's figures. Per day: predictions, labelled rows, label
coverage, realised accuracy / ROC-AUC (when the day has labels) and the CBPE
estimate (monitoring.cbpe), which needs scores only and so shows a drop before
any label arrives.

The retrain rule pools the labelled rows of the days with enough coverage
(`min_label_coverage` and `min_day_labels`, monitoring/config/late_labels.yaml)
and applies the concept-drift rule of monitoring.performance to them: a drop
against the champion's test figures beyond max_accuracy_drop / max_roc_auc_drop,
with at least min_labels labels pooled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from monitoring.cbpe import CBPE
from monitoring.config import CONFIG_DIR, DriftThresholds
from monitoring.performance import CONCEPT_DRIFT, realised_performance

LATE_LABELS_PATH = CONFIG_DIR / "late_labels.yaml"
ESTIMATED_METRICS = ("accuracy", "roc_auc")


@dataclass(frozen=True)
class LateLabelConfig:
    label_lag_days: int
    min_label_coverage: float
    min_day_labels: int
    min_covered_days: int

    def __post_init__(self) -> None:
        if self.label_lag_days < 1:
            raise ValueError(f"label_lag_days must be >= 1, got {self.label_lag_days}")
        if not 0.0 < self.min_label_coverage <= 1.0:
            raise ValueError(f"min_label_coverage must be in (0, 1], got {self.min_label_coverage}")
        if self.min_day_labels < 1 or self.min_covered_days < 1:
            raise ValueError("min_day_labels and min_covered_days must be >= 1")


def load_config(
    overrides: Mapping[str, Any] | None = None, path: str | Path | None = None
) -> LateLabelConfig:
    """monitoring/config/late_labels.yaml (every key required), then `overrides`."""
    raw = yaml.safe_load(Path(path or LATE_LABELS_PATH).read_text()) or {}
    raw.update(dict(overrides or {}))
    fields = LateLabelConfig.__dataclass_fields__
    unknown = sorted(set(raw) - set(fields))
    missing = sorted(set(fields) - set(raw))
    if unknown or missing:
        raise ValueError(f"late-label config: unknown keys {unknown}, missing keys {missing}")
    return LateLabelConfig(
        label_lag_days=int(raw["label_lag_days"]),
        min_label_coverage=float(raw["min_label_coverage"]),
        min_day_labels=int(raw["min_day_labels"]),
        min_covered_days=int(raw["min_covered_days"]),
    )


def fit_estimator(profile: pd.DataFrame, decision_threshold: float) -> CBPE:
    """CBPE calibrated on the reference profile's held-out scores and labels."""
    if "label" in profile and profile["label"].notna().any():
        labelled = profile[profile["label"].notna()]
        return CBPE(decision_threshold).fit(
            labelled["score"].to_numpy(dtype="float64"),
            labelled["label"].to_numpy(dtype="int64").tolist(),
        )
    return CBPE(decision_threshold).fit(profile["score"].to_numpy(dtype="float64"), None)


def _realised(day: pd.DataFrame, threshold: float) -> dict[str, float | None]:
    from sklearn.metrics import roc_auc_score

    labelled = day[day["feedback_label"].notna()]
    if labelled.empty:
        return {"accuracy": None, "roc_auc": None}
    y = labelled["feedback_label"].astype("int64").to_numpy()
    p = labelled["score"].to_numpy(dtype="float64")
    return {
        "accuracy": float(((p >= threshold).astype("int64") == y).mean()),
        "roc_auc": float(roc_auc_score(y, p)) if len(set(y)) == 2 else None,
    }


def daily_performance(
    frame: pd.DataFrame, estimator: CBPE, config: LateLabelConfig
) -> list[dict[str, Any]]:
    """One record per prediction day (UTC) of `frame`, oldest first."""
    if frame.empty:
        return []
    days = frame["ts"].dt.tz_convert("UTC").dt.strftime("%Y-%m-%d")
    out = []
    for day, rows in frame.groupby(days, sort=True):
        labelled = int(rows["feedback_label"].notna().sum())
        coverage = labelled / len(rows)
        lag_hours = None
        if labelled and "feedback_ts" in rows:
            lags = (rows["feedback_ts"] - rows["ts"]).dropna().dt.total_seconds() / 3600
            lag_hours = float(lags.median()) if len(lags) else None
        estimate = estimator.estimate(rows["score"].to_numpy(dtype="float64"))
        out.append(
            {
                "day": str(day),
                "predictions": len(rows),
                "labelled": labelled,
                "coverage": coverage,
                "median_label_lag_hours": lag_hours,
                "covered": coverage >= config.min_label_coverage
                and labelled >= config.min_day_labels,
                "realised": _realised(rows, estimator.decision_threshold),
                "estimated": {k: estimate[k] for k in ESTIMATED_METRICS},
            }
        )
    return out


def check_late_labels(
    frame: pd.DataFrame,
    profile: pd.DataFrame,
    champion_test_metrics: Mapping[str, Any],
    thresholds: DriftThresholds,
    config: LateLabelConfig,
) -> dict[str, Any]:
    """Per-day figures over the look-back window and whether realised quality calls for a retrain.

    `frame` is the prediction log over the window (read_predictions columns).
    `retrain` is True when the covered days' pooled realised quality dropped
    below the champion's test figures by more than allowed.
    """
    estimator = fit_estimator(profile, thresholds.decision_threshold)
    days = daily_performance(frame, estimator, config)
    covered = [d["day"] for d in days if d["covered"]]
    if frame.empty:
        pooled_rows = frame
    else:
        day_of = frame["ts"].dt.tz_convert("UTC").dt.strftime("%Y-%m-%d")
        pooled_rows = frame[day_of.isin(covered)]
    pooled = realised_performance(
        pooled_rows["feedback_label"], pooled_rows["score"], champion_test_metrics, thresholds
    )
    enough_days = len(covered) >= config.min_covered_days
    retrain = enough_days and pooled["status"] == CONCEPT_DRIFT
    if not enough_days:
        pooled["notes"].append(
            f"{len(covered)} day(s) with label coverage >= {config.min_label_coverage:.0%} and "
            f">= {config.min_day_labels} labels; {config.min_covered_days} needed: no decision"
        )
    latest = days[-1] if days else None
    estimated = dict.fromkeys(ESTIMATED_METRICS)
    if latest and latest["predictions"] >= thresholds.min_rows:
        estimated = latest["estimated"]
    elif latest:
        pooled["notes"].append(
            f"latest prediction day {latest['day']} has {latest['predictions']} predictions, "
            f"fewer than min_rows={thresholds.min_rows}: no estimate judged"
        )
    estimated_drop = {}
    for metric in ESTIMATED_METRICS:
        champion = pooled.get(f"champion_{metric}")
        value = estimated.get(metric)
        estimated_drop[metric] = (
            champion - value if champion is not None and value is not None else None
        )
    return {
        "days": days,
        "covered_days": covered,
        "pooled": pooled,
        "retrain": retrain,
        "reasons": [
            {**reason, "metric": f"late_label_{reason['metric']}"} for reason in pooled["reasons"]
        ]
        if retrain
        else [],
        "estimated": estimated,
        "estimated_day": latest["day"] if latest else None,
        "estimated_drop": estimated_drop,
        "calibrated": estimator.calibrator is not None,
        "config": config.__dict__,
    }
