"""The daily drift check: today's logged predictions against the champion's reference profile.

Up to five checks, each a different view of the same question ("is today's
traffic still what the champion was trained on?"). A use case runs those that
fit its kind (monitoring.config.KIND_CHECKS: tabular = the first three, text =
all five), or the `checks` its drift.yaml names; the feature columns and the
text column come from its feature module (core/usecases.py):

| check              | what                                                              |
|--------------------|-------------------------------------------------------------------|
| `feature_drift`    | Evidently per-feature drift test on the numeric features; fires   |
|                    | when at least `drifted_share` of them drift                       |
| `feature_psi`      | PSI per numeric feature (monitoring.psi); fires when at least     |
|                    | `drifted_share` of them reach `psi_threshold`                     |
| `prediction_drift` | Evidently drift test on the predicted score P(positive)           |
| `text_domain`      | domain classifier on `text_clean`: Evidently's text-content drift |
|                    | trains TF-IDF + SGD to tell reference from current rows and       |
|                    | reports its ROC-AUC on a held-out half (0.5 = indistinguishable)  |
| `text_descriptors` | Evidently drift tests on text descriptors of `text_clean` (length,|
|                    | words, sentences, out-of-vocabulary share, lexicon polarity)      |

Each check reports a continuous statistic (its `statistic`) and whether it
crossed its own threshold (`fired`). The day's decision combines the
statistics rather than counting the checks that fired (`decision_method:
combined`, the default): each statistic becomes a z-score against its spread
on calibration days of ordinary in-domain traffic (`check_null_mean`,
`check_null_sd`), capped at `z_cap` so that no single check can decide alone,
and the weighted sum, divided by its own spread on those days
(`combined_null_sd`), is a Stouffer-style combined z. The day is `drift` when
it reaches `combined_threshold`. A 35 %-foreign day moves every statistic a
little, which the combination adds up while no single threshold is crossed.
The calibration is `python -m bench.drift_calibrate`; its evidence is in
`bench/results/drift_calibration.json`. `decision_method: votes` keeps the
older rule (each fired check adds its `check_weights` weight; drift at
`min_votes`).

A check that fires on a day that is not `drift` (a prior shift: a day of only
negative reviews moves the scores but not the text) is a **warning**: listed in
`DriftResult.warnings` with its numbers, logged, pushed, never dropped. Fewer
than `min_rows` predictions give `insufficient_data`, never an alarm. Every
number computed lands in `DriftResult.metrics`, and the Evidently report is
kept as HTML and JSON.

Evidently is imported inside `_run_evidently` only: it takes ~12 s to import and
the serving process must never load it.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.usecases import UseCase, get_use_case
from monitoring.config import CHECK_NAMES, TEXT_CHECKS, DriftThresholds
from monitoring.descriptors import CUSTOM_DESCRIPTORS, add_text_descriptors
from monitoring.psi import psi
from monitoring.reference import SCORE

DRIFT = "drift"
NO_DRIFT = "no_drift"
INSUFFICIENT_DATA = "insufficient_data"
DECISIONS = (DRIFT, NO_DRIFT, INSUFFICIENT_DATA)

CHECKS = CHECK_NAMES
# Descriptors Evidently computes offline (no model or corpus download).
EVIDENTLY_DESCRIPTORS: tuple[str, ...] = ("text_length", "word_count", "sentence_count")
DESCRIPTOR_COLUMNS: tuple[str, ...] = (*EVIDENTLY_DESCRIPTORS, *CUSTOM_DESCRIPTORS)
TEXT_DOMAIN_IMPLEMENTATION = (
    "evidently text-content drift on text_clean: TF-IDF (sublinear, English stop words) + "
    "SGDClassifier, trained on a random half of reference+current rows, ROC-AUC on the other half"
)

REPORT_HTML = "drift_report.html"
REPORT_JSON = "drift_report.json"
SUMMARY_JSON = "drift_result.json"


class DriftInputError(ValueError):
    """The reference or current frame lacks what the drift check needs."""


_TEXT_DTYPES = frozenset({"object", "str", "string"})


@dataclass(frozen=True)
class DriftColumns:
    """Which columns of a use case's features the checks read."""

    numeric: tuple[str, ...]
    text: str | None
    feature_module: str

    @classmethod
    def of(cls, use_case: UseCase) -> DriftColumns:
        """From the feature module: `NUMERIC_FEATURES` / `TEXT_CLEAN` if it names them, else
        by FEATURE_DTYPES (numbers vs strings)."""
        features = use_case.features
        dtypes = dict(features.FEATURE_DTYPES)
        numeric = getattr(features, "NUMERIC_FEATURES", None) or tuple(
            c for c, d in dtypes.items() if str(d) not in _TEXT_DTYPES
        )
        text = getattr(features, "TEXT_CLEAN", None) or next(
            (c for c, d in dtypes.items() if str(d) in _TEXT_DTYPES), None
        )
        return cls(tuple(numeric), text, use_case.feature_module)


@dataclass
class DriftResult:
    """Outcome of one drift check; `to_dict()` is what the DAG logs and passes on."""

    decision: str
    reasons: list[dict[str, Any]]
    metrics: dict[str, Any]
    n_reference: int
    n_current: int
    report_html: str | None = None
    report_json: str | None = None
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        return self.decision == DRIFT

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN and numpy scalars turned into plain JSON values)."""
        return _jsonable(asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _require_columns(frame: pd.DataFrame, name: str, columns: DriftColumns, text: bool) -> None:
    needed = [*([columns.text] if text and columns.text else []), *columns.numeric]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DriftInputError(
            f"{name} frame lacks column(s) {missing}; it must hold "
            f"{columns.feature_module}.build_features output ({needed}) and, for the "
            f"prediction-drift check, '{SCORE}'"
        )


def _has_scores(frame: pd.DataFrame) -> bool:
    return SCORE in frame.columns and bool(frame[SCORE].notna().any())


def _prepare(
    frame: pd.DataFrame, columns: DriftColumns, text: bool, with_score: bool
) -> pd.DataFrame:
    numeric = [*columns.numeric, *([SCORE] if with_score else [])]
    text_columns = [columns.text] if text and columns.text else []
    out = frame.loc[:, [*text_columns, *numeric]].reset_index(drop=True).copy()
    for column in text_columns:
        out[column] = out[column].fillna("").astype(str)
    for column in numeric:
        out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
    return out


def _psi_or_none(reference: pd.Series, current: pd.Series, bins: int) -> float | None:
    ref = reference.dropna().to_numpy()
    cur = current.dropna().to_numpy()
    if ref.size == 0 or cur.size == 0:
        return None
    return psi(ref, cur, bins=bins)


def _run_evidently(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    thresholds: DriftThresholds,
    columns: DriftColumns,
    with_score: bool,
    with_text: bool,
    with_descriptors: bool,
    html_path: Path,
    json_path: Path,
) -> dict[str, dict[str, Any]]:
    """Build and run the Evidently report, save it, return {column: drift result}."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.descriptors import SentenceCount, TextLength, WordCount
    from evidently.legacy.calculations.stattests.registry import StatTestNotFoundError
    from evidently.metrics import ValueDrift
    from sklearn.exceptions import ConvergenceWarning

    features = list(columns.numeric)
    text_column = columns.text if (with_text or with_descriptors) else None
    numeric = [
        *features,
        *([SCORE] if with_score else []),
        *(CUSTOM_DESCRIPTORS if with_descriptors else ()),
    ]
    definition = DataDefinition(
        numerical_columns=numeric, text_columns=[text_column] if text_column else None
    )
    descriptors = (
        [
            TextLength(text_column, alias="text_length"),
            WordCount(text_column, alias="word_count"),
            SentenceCount(text_column, alias="sentence_count"),
        ]
        if with_descriptors and text_column
        else None
    )
    # One ValueDrift per column rather than DataDriftPreset: the preset recomputes
    # every column's drift a second time to render its table (~2x the run time);
    # the shares the decision needs are computed from these results below.
    items: list[Any] = [
        ValueDrift(
            column=column,
            method=thresholds.per_feature_method.get(column, thresholds.feature_method),
            threshold=thresholds.per_feature_threshold.get(column, thresholds.feature_threshold),
        )
        for column in features
    ]
    if with_score:
        items.append(
            ValueDrift(
                column=SCORE,
                method=thresholds.prediction_method,
                threshold=thresholds.prediction_threshold,
            )
        )
    if with_text and text_column:
        items.append(
            ValueDrift(
                column=text_column,
                method=thresholds.text_method,
                threshold=thresholds.text_threshold,
            )
        )
    if with_descriptors:
        items.extend(
            ValueDrift(
                column=column,
                method=thresholds.descriptor_method,
                threshold=thresholds.descriptor_threshold,
            )
            for column in DESCRIPTOR_COLUMNS
        )
    with warnings.catch_warnings():
        # Constant columns (e.g. no HTML at all in a day) make Evidently's
        # correlation widgets divide by a zero standard deviation; harmless.
        warnings.filterwarnings(
            "ignore", message="invalid value encountered", category=RuntimeWarning
        )
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        try:
            snapshot = Report(items, include_tests=True).run(
                Dataset.from_pandas(current, data_definition=definition, descriptors=descriptors),
                Dataset.from_pandas(reference, data_definition=definition, descriptors=descriptors),
            )
        except StatTestNotFoundError as exc:
            raise ValueError(
                f"unknown Evidently stat test in the drift thresholds ({exc}); check "
                "feature_method, per_feature_method, prediction_method, descriptor_method, text_method"
            ) from exc
        snapshot.save_html(str(html_path))
        snapshot.save_json(str(json_path))

    drifts: dict[str, dict[str, Any]] = {}
    for result in snapshot.metric_results.values():
        location = getattr(result, "metric_value_location", None)
        params = location.metric.params if location is not None else {}
        if not str(params.get("type", "")).endswith(":ValueDrift"):
            continue
        statuses = [str(getattr(t.status, "value", t.status)) for t in result.tests]
        drifts[params["column"]] = {
            "drift_score": float(result.value),
            "method": params.get("method"),
            "threshold": params.get("threshold"),
            "drifted": "FAIL" in statuses,
        }
    return drifts


def _share_check(
    flags: dict[str, bool], share_threshold: float, what: str, scores: list[float | None]
) -> dict[str, Any]:
    drifted = sorted(c for c, flag in flags.items() if flag)
    share = len(drifted) / len(flags) if flags else 0.0
    present = [float(v) for v in scores if v is not None and math.isfinite(float(v))]
    return {
        "fired": bool(flags) and share >= share_threshold,
        "value": share,
        "threshold": share_threshold,
        "statistic": float(np.mean(present)) if present else None,
        "detail": f"{len(drifted)}/{len(flags)} {what}: {', '.join(drifted) or 'none'}",
    }


# What each check's `statistic` is (the continuous figure the combination uses).
CHECK_STATISTICS: dict[str, str] = {
    "feature_drift": "mean per-feature drift score (feature_method) of the numeric features",
    "feature_psi": "mean PSI of the numeric features",
    "prediction_drift": "drift score (prediction_method) of the predicted score",
    "text_domain": "ROC-AUC of the reference-vs-current domain classifier",
    "text_descriptors": "mean drift score (descriptor_method) of the text descriptors",
}


def combine_checks(
    checks: dict[str, dict[str, Any]], thresholds: DriftThresholds
) -> dict[str, Any]:
    """The checks' evidence as one figure: capped z-scores, weighted, Stouffer-style.

    z_i = (statistic_i - check_null_mean_i) / check_null_sd_i, clipped to
    [-z_cap, z_cap]; combined = sum(w_i * z_i) / combined_null_sd. A check
    without a statistic (skipped) contributes nothing. Pure function of the
    checks and thresholds, so a calibration can replay a day's decision.
    """
    z: dict[str, float | None] = {}
    total = 0.0
    for name in CHECKS:
        statistic = checks.get(name, {}).get("statistic")
        if statistic is None or not math.isfinite(float(statistic)):
            z[name] = None
            continue
        raw = (float(statistic) - thresholds.check_null_mean[name]) / thresholds.check_null_sd[name]
        capped = max(-thresholds.z_cap, min(thresholds.z_cap, raw))
        z[name] = capped
        total += thresholds.combine_weights[name] * capped
    combined = total / thresholds.combined_null_sd
    return {
        "z": z,
        "score": combined,
        "threshold": thresholds.combined_threshold,
        "drift": combined >= thresholds.combined_threshold,
    }


def decide(checks: dict[str, dict[str, Any]], thresholds: DriftThresholds) -> dict[str, Any]:
    """The day's decision from its checks: `{"decision", "votes", "combined", "warnings"}`.

    `warnings` are the checks that fired although the day is not `drift`.
    """
    fired = [name for name in CHECKS if checks.get(name, {}).get("fired")]
    votes = sum(thresholds.check_weights[name] for name in fired)
    combined = combine_checks(checks, thresholds)
    if thresholds.decision_method == "combined":
        drift = bool(combined["drift"])
    else:
        drift = votes >= thresholds.min_votes
    warnings = [] if drift else [_reason(name, checks[name]) for name in fired]
    return {
        "decision": DRIFT if drift else NO_DRIFT,
        "votes": votes,
        "combined": combined,
        "warnings": warnings,
    }


def _reason(name: str, check: dict[str, Any]) -> dict[str, Any]:
    return {
        "metric": name,
        "value": check["value"],
        "threshold": check["threshold"],
        "detail": check["detail"],
    }


def _write_summary(result: DriftResult, out_dir: Path) -> None:
    (out_dir / SUMMARY_JSON).write_text(json.dumps(result.to_dict(), indent=2))


def check_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    thresholds: DriftThresholds,
    out_dir: str | Path,
    use_case: str | None = None,
) -> DriftResult:
    """Compare `current` (logged predictions) with `reference` (a reference profile).

    `use_case` (default reviews) names the feature columns and, through its kind or its
    drift.yaml `checks`, the checks that run. Both frames need the use case's numeric
    features (+ its text feature when a text check runs); `score` is used when both
    have it. Writes `drift_report.html`, `drift_report.json` (Evidently) and
    `drift_result.json` (this result) into `out_dir`.
    """
    uc = get_use_case(use_case)
    enabled = thresholds.enabled_checks(uc.kind)
    columns = DriftColumns.of(uc)
    wants_text = bool(TEXT_CHECKS & set(enabled))
    if wants_text and columns.text is None:
        raise DriftInputError(
            f"use case {uc.name!r} runs {sorted(TEXT_CHECKS & set(enabled))} but "
            f"{uc.feature_module} has no text feature column"
        )
    _require_columns(reference, "reference", columns, wants_text)
    _require_columns(current, "current", columns, wants_text)
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    n_ref, n_cur = len(reference), len(current)

    if n_cur < thresholds.min_rows or n_ref < thresholds.min_reference_rows:
        short = (
            f"current has {n_cur} rows, fewer than min_rows={thresholds.min_rows}"
            if n_cur < thresholds.min_rows
            else f"reference has {n_ref} rows, fewer than min_reference_rows="
            f"{thresholds.min_reference_rows}"
        )
        result = DriftResult(
            decision=INSUFFICIENT_DATA,
            reasons=[],
            metrics={"insufficient_data": short},
            n_reference=n_ref,
            n_current=n_cur,
            thresholds=thresholds.to_dict(),
        )
        _write_summary(result, target)
        return result

    with_score = _has_scores(reference) and _has_scores(current)
    ref = _prepare(reference, columns, wants_text, with_score)
    cur = _prepare(current, columns, wants_text, with_score)
    with_descriptors = "text_descriptors" in enabled
    if with_descriptors:
        assert columns.text is not None
        ref, cur = add_text_descriptors(ref, cur, column=columns.text)
    with_text = (
        "text_domain" in enabled
        and columns.text is not None
        and bool(cur[columns.text].str.strip().any())
        and bool(ref[columns.text].str.strip().any())
    )

    html_path, json_path = target / REPORT_HTML, target / REPORT_JSON
    drifts = _run_evidently(
        ref,
        cur,
        thresholds,
        columns,
        with_score,
        with_text,
        with_descriptors,
        html_path,
        json_path,
    )

    bins = thresholds.psi_bins
    features = {
        c: {**drifts[c], "psi": _psi_or_none(ref[c], cur[c], bins)} for c in columns.numeric
    }
    descriptors = {
        c: {
            **drifts[c],
            "reference_mean": float(ref[c].mean()) if c in ref else None,
            "current_mean": float(cur[c].mean()) if c in cur else None,
        }
        for c in (DESCRIPTOR_COLUMNS if with_descriptors else ())
    }
    metrics: dict[str, Any] = {
        "use_case": uc.name,
        "checks_run": list(enabled),
        "features": features,
        "descriptors": descriptors,
    }
    checks: dict[str, dict[str, Any]] = {}

    checks["feature_drift"] = _share_check(
        {c: bool(v["drifted"]) for c, v in features.items()},
        thresholds.drifted_share,
        f"numeric features drifted ({thresholds.feature_method})",
        [v["drift_score"] for v in features.values()],
    )
    checks["feature_psi"] = _share_check(
        {
            c: v["psi"] is not None and v["psi"] >= thresholds.psi_threshold
            for c, v in features.items()
        },
        thresholds.drifted_share,
        f"numeric features with PSI >= {thresholds.psi_threshold}",
        [v["psi"] for v in features.values()],
    )
    checks["text_descriptors"] = _share_check(
        {c: bool(v["drifted"]) for c, v in descriptors.items()},
        thresholds.descriptor_drifted_share,
        f"text descriptors drifted ({thresholds.descriptor_method})",
        [v["drift_score"] for v in descriptors.values()],
    )
    metrics["feature_drifted_share"] = checks["feature_drift"]["value"]
    metrics["feature_psi_share"] = checks["feature_psi"]["value"]
    metrics["descriptor_drifted_share"] = checks["text_descriptors"]["value"]

    if with_score:
        score = drifts[SCORE]
        threshold = thresholds.decision_threshold
        metrics["prediction"] = {
            **score,
            "psi": _psi_or_none(ref[SCORE], cur[SCORE], bins),
            "reference_mean_score": float(ref[SCORE].mean()),
            "current_mean_score": float(cur[SCORE].mean()),
            "reference_positive_rate": float((ref[SCORE] >= threshold).mean()),
            "current_positive_rate": float((cur[SCORE] >= threshold).mean()),
        }
        checks["prediction_drift"] = {
            "fired": bool(score["drifted"]),
            "value": score["drift_score"],
            "threshold": score["threshold"],
            "statistic": score["drift_score"],
            "detail": f"score drift by {score['method']}; mean score "
            f"{metrics['prediction']['reference_mean_score']:.3f} -> "
            f"{metrics['prediction']['current_mean_score']:.3f}",
        }
    else:
        metrics["prediction"] = None
        checks["prediction_drift"] = {
            "fired": False,
            "value": None,
            "threshold": thresholds.prediction_threshold,
            "statistic": None,
            "detail": f"skipped: '{SCORE}' missing or empty in reference or current",
        }

    if with_text:
        assert columns.text is not None
        text = drifts[columns.text]
        metrics["text_domain"] = {
            "roc_auc": text["drift_score"],
            "method": text["method"],
            "threshold": text["threshold"],
            "drifted": text["drifted"],
            "implementation": TEXT_DOMAIN_IMPLEMENTATION,
        }
        checks["text_domain"] = {
            "fired": bool(text["drifted"]),
            "value": text["drift_score"],
            "threshold": text["threshold"],
            "statistic": text["drift_score"],
            "detail": f"reference-vs-current classifier ROC-AUC {text['drift_score']:.3f} "
            f"({text['method']})",
        }
    else:
        metrics["text_domain"] = None
        checks["text_domain"] = {
            "fired": False,
            "value": None,
            "threshold": thresholds.text_threshold,
            "statistic": None,
            "detail": f"skipped: {columns.text} is empty in reference or current",
        }

    checks = {name: checks[name] for name in enabled}
    verdict = decide(checks, thresholds)
    combined = verdict["combined"]
    reasons: list[dict[str, Any]] = []
    if verdict["decision"] == DRIFT:
        # What made the day drift: the combined figure first (when it decides),
        # then every check that crossed its own threshold.
        if thresholds.decision_method == "combined":
            z = ", ".join(f"{k} {v:.2f}" for k, v in combined["z"].items() if v is not None)
            reasons.append(
                {
                    "metric": "combined",
                    "value": combined["score"],
                    "threshold": combined["threshold"],
                    "detail": f"combined z of the checks' statistics (capped z: {z})",
                }
            )
        reasons.extend(_reason(name, c) for name, c in checks.items() if c["fired"])
    metrics["checks_fired"] = sum(1 for c in checks.values() if c["fired"])
    metrics["votes"] = verdict["votes"]
    metrics["combined"] = combined
    metrics["warnings"] = len(verdict["warnings"])
    result = DriftResult(
        decision=verdict["decision"],
        reasons=reasons,
        metrics=metrics,
        n_reference=n_ref,
        n_current=n_cur,
        report_html=str(html_path),
        report_json=str(json_path),
        checks=checks,
        thresholds=thresholds.to_dict(),
        warnings=verdict["warnings"],
    )
    _write_summary(result, target)
    return result
