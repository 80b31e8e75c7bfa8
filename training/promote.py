"""Register a trained model and let the gate decide whether it replaces the champion.

Promotion is by alias: the registered model `review-sentiment` has at most
one `champion` (what serving loads) and one `challenger` (the latest version
that did not win). The decision itself is `decide_promotion`, a pure function
of the two models' scores and a `GatePolicy` read from the use case's
`gate.yaml` (default `training/config/gate.yaml`), so it is unit-tested on
numbers, and `register_and_gate` only does I/O around it: register, re-score
both models on the same test rows (each at its own decision threshold),
overall and per segment, apply, record.

Gate semantics (see gate.yaml). For every gated metric, `delta` is challenger
minus champion, sign-flipped when lower is better, so a positive delta is
always an improvement. The challenger is promoted iff

- no gated metric regresses beyond its tolerance (`delta >= -tolerance`)
  overall, and none on any segment with at least `segments.min_rows` test rows
  (`delta >= -segment_tolerance`); smaller segments are reported, not judged;
- the primary metric improves overall by at least `primary.min_improvement`
  (`delta >= min_improvement`; a negative value admits a slightly worse but
  fresher model, still bounded by the primary metric's own tolerance).

So a model that wins on ROC-AUC but calls more rows wrong at its threshold, or
wins on the mix but loses on one source, is held back. Comparisons forgive
1e-12 of floating-point rounding, so values exactly on a boundary behave as
written. A NaN challenger primary value never promotes; a metric undefined
(NaN) for either model on a segment (one class only) is reported, not judged.
A missing champion, or a champion whose primary value is NaN, is replaced.
"""

from __future__ import annotations

import getpass
import itertools
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow.exceptions import MlflowException

from core.usecases import DEFAULT_USE_CASE, get_use_case
from training import mlflow_utils
from training.data import labels, load_features, split_frames
from training.evaluate import (
    DEFAULT_THRESHOLD,
    LOWER_IS_BETTER,
    METRIC_NAMES,
    TAG_THRESHOLD,
    THRESHOLD_OBJECTIVES,
    compute_metrics,
    score_frame,
)

log = logging.getLogger(__name__)

GATE_CONFIG = Path(__file__).with_name("config") / "gate.yaml"
CHAMPION = "champion"
CHALLENGER = "challenger"
FLOAT_SLACK = 1e-12
OVERALL = "overall"
# Model-version tag values are bounded; the full report is also a run artifact.
MAX_REPORT_TAG_CHARS = 4900
DIRECTIONS = ("higher", "lower")
# `gate.decision` tag of a registered version: what the gate (or the daily re-gate) made of it.
TAG_DECISION = "gate.decision"
PROMOTED = "promoted"
HELD_BACK = "held_back"
AWAITING_SHADOW = "awaiting_shadow"
SUPERSEDED = "superseded"
# Live statuses after which a challenger that passes offline waits for shadow traffic.
NOT_YET_JUDGED = ("too_few_rows", "unavailable")


class GatePolicyError(ValueError):
    """A gate policy that cannot be applied (unknown metric, negative tolerance, ...)."""


class PromotionError(RuntimeError):
    """A registry operation the gate or a rollback cannot carry out."""


def _finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise GatePolicyError(f"{name} must be a finite number, got {value}")


@dataclass(frozen=True)
class MetricRule:
    """One gated metric: its direction and how far the challenger may fall behind."""

    name: str
    higher_is_better: bool = True
    tolerance: float = 0.0
    segment_tolerance: float | None = None

    def __post_init__(self) -> None:
        if self.name not in METRIC_NAMES:
            raise GatePolicyError(
                f"metric {self.name!r} is not a computed metric; choose one of {list(METRIC_NAMES)}"
            )
        if self.higher_is_better == (self.name in LOWER_IS_BETTER):
            direction = "lower" if self.name in LOWER_IS_BETTER else "higher"
            raise GatePolicyError(f"direction of {self.name!r} must be {direction!r}")
        for attr in ("tolerance", "segment_tolerance"):
            value = getattr(self, attr)
            if value is None:
                continue
            _finite(f"{self.name}.{attr}", value)
            if value < 0:
                raise GatePolicyError(f"{self.name}.{attr} must be >= 0, got {value}")

    @property
    def on_segments(self) -> float:
        """The tolerance applied per segment (default: the overall one)."""
        return self.tolerance if self.segment_tolerance is None else self.segment_tolerance


@dataclass(frozen=True)
class SegmentRule:
    """Which test-row column cuts the segments, and how many rows a segment needs."""

    column: str | None = None
    min_rows: int = 200
    bins: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.min_rows < 1:
            raise GatePolicyError(f"segments.min_rows must be >= 1, got {self.min_rows}")
        if self.bins is not None:
            if self.column is None:
                raise GatePolicyError("segments.bins needs segments.column")
            if len(self.bins) < 2 or list(self.bins) != sorted(set(self.bins)):
                raise GatePolicyError(
                    f"segments.bins must be >= 2 increasing edges, got {list(self.bins)}"
                )

    def labels_of(self, frame: pd.DataFrame) -> pd.Series | None:
        """The segment name of every row, or None when the rows lack the column."""
        if self.column is None or self.column not in frame.columns:
            return None
        values = frame[self.column]
        if self.bins is not None:
            edges = list(self.bins)
            names = [f"[{lo:g}, {hi:g})" for lo, hi in itertools.pairwise(edges)]
            cut = pd.cut(pd.to_numeric(values, errors="coerce"), edges, right=False, labels=names)
            return cut.astype(object).where(cut.notna(), "out_of_bins").astype(str)
        return values.astype(str).where(values.notna(), "missing")


# What `serving.live_compare` computes for both models on labelled shadow-scored traffic.
LIVE_METRICS = ("roc_auc", "balanced_accuracy", "f1", "log_loss", "brier")
LIVE = "live"


def _rules_dict(rules: Sequence[MetricRule], *, segments: bool = False) -> dict[str, Any]:
    """Metric rules as plain data (tags, reports): direction and tolerances per metric."""
    out: dict[str, Any] = {}
    for rule in rules:
        entry: dict[str, Any] = {
            "direction": "higher" if rule.higher_is_better else "lower",
            "tolerance": rule.tolerance,
        }
        if segments:
            entry["segment_tolerance"] = rule.on_segments
        out[rule.name] = entry
    return out


@dataclass(frozen=True)
class LivePolicy:
    """Champion vs challenger on live labelled traffic (the prediction log's shadow pairs).

    Judged only when at least `min_labelled_rows` shadow-scored requests of this pair of
    versions, predicted in the last `window_days`, have a feedback label; otherwise the gate
    says so and decides on the offline checks alone, unless `hold_for_shadow`: then a
    challenger that passes offline is not promoted at registration but keeps the `challenger`
    alias, is shadow-scored, and is decided by the daily re-gate (`training.regate`) once
    enough labelled rows exist, or held back after `max_wait_days` without them.
    """

    metrics: tuple[MetricRule, ...]
    min_labelled_rows: int = 200
    window_days: float = 30.0
    hold_for_shadow: bool = False
    max_wait_days: float = 14.0

    def __post_init__(self) -> None:
        if not self.metrics:
            raise GatePolicyError("live.metrics must name at least one metric")
        for rule in self.metrics:
            if rule.name not in LIVE_METRICS:
                raise GatePolicyError(
                    f"live metric {rule.name!r} is not computed on live traffic; "
                    f"choose from {list(LIVE_METRICS)}"
                )
        if self.min_labelled_rows < 1:
            raise GatePolicyError(
                f"live.min_labelled_rows must be >= 1, got {self.min_labelled_rows}"
            )
        _finite("live.window_days", self.window_days)
        if self.window_days <= 0:
            raise GatePolicyError(f"live.window_days must be > 0, got {self.window_days}")
        if not isinstance(self.hold_for_shadow, bool):
            raise GatePolicyError(
                f"live.hold_for_shadow must be true or false, got {self.hold_for_shadow!r}"
            )
        _finite("live.max_wait_days", self.max_wait_days)
        if self.max_wait_days <= 0:
            raise GatePolicyError(f"live.max_wait_days must be > 0, got {self.max_wait_days}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "metrics": _rules_dict(self.metrics),
            "min_labelled_rows": self.min_labelled_rows,
            "window_days": self.window_days,
            "hold_for_shadow": self.hold_for_shadow,
            "max_wait_days": self.max_wait_days,
        }


DEFAULT_METRICS = (
    MetricRule("roc_auc", True, 0.0),
    MetricRule("balanced_accuracy", True, 0.01),
    MetricRule("log_loss", False, 0.02),
)


@dataclass(frozen=True)
class GatePolicy:
    """How a challenger is compared with the champion (see the module docstring)."""

    metrics: tuple[MetricRule, ...] = DEFAULT_METRICS
    primary_metric: str = "roc_auc"
    min_improvement: float = 0.0
    segments: SegmentRule = field(default_factory=SegmentRule)
    threshold_objective: str = "balanced_accuracy"
    live: LivePolicy | None = None

    def __post_init__(self) -> None:
        if not self.metrics:
            raise GatePolicyError("metrics must name at least one gated metric")
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise GatePolicyError(f"metrics names a metric twice: {names}")
        if self.primary_metric not in names:
            raise GatePolicyError(
                f"primary metric {self.primary_metric!r} must be one of the gated metrics {names}"
            )
        _finite("primary.min_improvement", self.min_improvement)
        if self.threshold_objective not in THRESHOLD_OBJECTIVES:
            raise GatePolicyError(
                f"threshold.objective {self.threshold_objective!r} is not one of "
                f"{list(THRESHOLD_OBJECTIVES)}"
            )

    def rule(self, name: str) -> MetricRule:
        return next(m for m in self.metrics if m.name == name)

    @property
    def primary(self) -> MetricRule:
        return self.rule(self.primary_metric)

    def as_dict(self) -> dict[str, Any]:
        return {
            "metrics": _rules_dict(self.metrics, segments=True),
            "primary": {"metric": self.primary_metric, "min_improvement": self.min_improvement},
            "segments": {
                "column": self.segments.column,
                "min_rows": self.segments.min_rows,
                "bins": list(self.segments.bins) if self.segments.bins else None,
            },
            "threshold": {"objective": self.threshold_objective},
            "live": self.live.as_dict() if self.live is not None else None,
        }


GATE_KEYS = ("metrics", "primary", "segments", "threshold", "live")


def _known(where: str, data: Mapping[str, Any], keys: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(keys))
    if unknown:
        raise GatePolicyError(f"unknown {where} keys {unknown}; known: {sorted(keys)}")


def policy_from_dict(data: Mapping[str, Any]) -> GatePolicy:
    """A GatePolicy from the parsed gate.yaml (see that file for the format)."""
    _known("gate", data, GATE_KEYS)
    rules = _rules("metrics", data.get("metrics"), ("direction", "tolerance", "segment_tolerance"))
    primary = data.get("primary") or {}
    _known("primary", primary, ("metric", "min_improvement"))
    segments = data.get("segments") or {}
    _known("segments", segments, ("column", "min_rows", "bins"))
    threshold = data.get("threshold") or {}
    _known("threshold", threshold, ("objective",))
    live = data.get("live")
    live_policy = None
    if live is not None:
        if not isinstance(live, Mapping):
            raise GatePolicyError(
                "live must be a mapping {metrics, min_labelled_rows, window_days, ...}"
            )
        _known(
            "live",
            live,
            ("metrics", "min_labelled_rows", "window_days", "hold_for_shadow", "max_wait_days"),
        )
        live_policy = LivePolicy(
            metrics=tuple(_rules("live.metrics", live.get("metrics"), ("direction", "tolerance"))),
            min_labelled_rows=int(live.get("min_labelled_rows", LivePolicy.min_labelled_rows)),
            window_days=float(live.get("window_days", LivePolicy.window_days)),
            hold_for_shadow=live.get("hold_for_shadow", LivePolicy.hold_for_shadow),
            max_wait_days=float(live.get("max_wait_days", LivePolicy.max_wait_days)),
        )
    bins = segments.get("bins")
    return GatePolicy(
        metrics=tuple(rules),
        primary_metric=str(primary.get("metric", rules[0].name)),
        min_improvement=float(primary.get("min_improvement", 0.0)),
        segments=SegmentRule(
            column=segments.get("column"),
            min_rows=int(segments.get("min_rows", SegmentRule.min_rows)),
            bins=tuple(float(b) for b in bins) if bins is not None else None,
        ),
        threshold_objective=str(threshold.get("objective", GatePolicy.threshold_objective)),
        live=live_policy,
    )


def _rules(where: str, raw: Any, keys: tuple[str, ...]) -> list[MetricRule]:
    """MetricRules from a {name: {direction, tolerance, ...}} mapping of gate.yaml."""
    if not isinstance(raw, Mapping) or not raw:
        raise GatePolicyError(f"{where} must map metric names to {{direction, tolerance}}")
    rules = []
    for name, spec in raw.items():
        spec = spec or {}
        _known(f"{where}.{name}", spec, keys)
        direction = spec.get("direction", "lower" if name in LOWER_IS_BETTER else "higher")
        if direction not in DIRECTIONS:
            raise GatePolicyError(f"{where}.{name}.direction must be one of {DIRECTIONS}")
        segment_tolerance = spec.get("segment_tolerance")
        rules.append(
            MetricRule(
                str(name),
                direction == "higher",
                float(spec.get("tolerance", 0.0)),
                None if segment_tolerance is None else float(segment_tolerance),
            )
        )
    return rules


def load_gate_policy(path: str | Path = GATE_CONFIG) -> GatePolicy:
    """The GatePolicy in a YAML file (default training/config/gate.yaml)."""
    path = Path(path)
    data = yaml.safe_load(path.read_text()) or {}
    try:
        return policy_from_dict(data)
    except (GatePolicyError, TypeError, ValueError) as exc:
        raise GatePolicyError(f"{path}: {exc}") from exc


def threshold_objective_for(use_case: str = DEFAULT_USE_CASE) -> str:
    """What the decision threshold maximises on valid: the use case's gate.yaml `threshold`."""
    return load_gate_policy(get_use_case(use_case).config_path("gate")).threshold_objective


@dataclass(frozen=True)
class Scores:
    """One model's metrics on the test rows: overall, and per segment with its row count."""

    overall: Mapping[str, float]
    segments: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    rows: Mapping[str, int] = field(default_factory=dict)
    threshold: float = DEFAULT_THRESHOLD


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided and every number it decided on.

    `challenger_value`, `champion_value` and `delta` are the primary metric
    overall; `checks` holds one row per (scope, metric) compared.
    """

    promote: bool
    reason: str
    challenger_value: float
    champion_value: float | None
    delta: float | None
    checks: tuple[dict[str, Any], ...] = ()
    small_segments: Mapping[str, int] = field(default_factory=dict)
    live: Mapping[str, Any] = field(default_factory=dict)
    """What the live check found: `status` (judged | too_few_rows | not_configured |
    no_comparison | unavailable), `labelled_rows`, `min_labelled_rows`, the versions, window
    and why."""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["checks"] = list(self.checks)
        out["small_segments"] = dict(self.small_segments)
        out["live"] = dict(self.live)
        return out

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if c["verdict"] in ("regressed", "short_of_min")]


def _metric(metrics: Mapping[str, float], name: str, who: str) -> float:
    if name not in metrics:
        raise GatePolicyError(f"{who} metrics lack {name!r}; got {sorted(metrics)}")
    return float(metrics[name])


def _as_scores(value: Scores | Mapping[str, float]) -> Scores:
    return value if isinstance(value, Scores) else Scores(overall=value)


def _check(
    scope: str, rule: MetricRule, new: float, old: float, tolerance: float
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "scope": scope,
        "metric": rule.name,
        "challenger": new,
        "champion": old,
        "delta": None,
        "tolerance": tolerance,
    }
    if math.isnan(new) or math.isnan(old):
        row["verdict"] = "undefined"
        return row
    delta = new - old if rule.higher_is_better else old - new
    row["delta"] = delta
    row["verdict"] = "regressed" if delta < -tolerance - FLOAT_SLACK else "ok"
    return row


def _line(check: dict[str, Any]) -> str:
    delta = check["delta"]
    shown = "n/a" if delta is None else f"{delta:+.6f}"
    return (
        f"{check['metric']} on {check['scope']} {check['challenger']:.6f} vs champion "
        f"{check['champion']:.6f} (delta {shown}"
        + (f", tolerance {check['tolerance']}" if check["verdict"] == "regressed" else "")
        + ")"
    )


def decide_promotion(
    challenger: Scores | Mapping[str, float],
    champion: Scores | Mapping[str, float] | None,
    policy: GatePolicy,
    live: Mapping[str, Any] | None = None,
) -> GateDecision:
    """Pure gate: should `challenger` replace `champion` under `policy`?

    Plain metric dicts are overall scores without segments. `live` is what
    `serving.live_compare.live_comparison` returned for this challenger and champion on
    live labelled traffic (None: not read). With `policy.live` set and at least
    `min_labelled_rows` labelled rows, every live metric is a check of scope `live`, and one
    that regresses beyond its tolerance holds the challenger back even when it wins offline;
    with fewer rows the decision is the offline one and the reason says so.
    """
    decision = _decide_offline(challenger, champion, policy)
    if champion is None or decision.champion_value is None or decision.delta is None:
        # No comparison was made (first model, NaN values): nothing live to compare either.
        status = "no_comparison" if policy.live is not None else "not_configured"
        return replace(decision, live={"status": status})
    return _apply_live(decision, policy, live)


def _live_value(figures: Mapping[str, Any], name: str) -> float:
    value = figures.get(name)
    return math.nan if value is None else float(value)


def _apply_live(
    decision: GateDecision, policy: GatePolicy, live: Mapping[str, Any] | None
) -> GateDecision:
    """The offline decision, held back too if the challenger regresses on live traffic."""
    rules = policy.live
    if rules is None:
        return replace(decision, live={"status": "not_configured"})
    if live is None or live.get("error"):
        why = (live or {}).get("error") or "live traffic was not read"
        info = {"status": "unavailable", "why": why, "min_labelled_rows": rules.min_labelled_rows}
        note = f"; live check unavailable ({why}): decided on offline metrics alone"
        return replace(decision, reason=decision.reason + note, live=info)
    rows = int(live.get("labelled_rows") or 0)
    info = {
        "labelled_rows": rows,
        "shadow_rows": int(live.get("rows") or 0),
        "min_labelled_rows": rules.min_labelled_rows,
        "window_days": rules.window_days,
        **{
            k: live[k]
            for k in ("champion_version", "challenger_version", "start", "end")
            if k in live
        },
    }
    if rows < rules.min_labelled_rows:
        info["status"] = "too_few_rows"
        note = (
            f"; live check not judged: {rows} labelled shadow-scored row(s) for this "
            f"challenger and champion, fewer than min_labelled_rows {rules.min_labelled_rows}: "
            "decided on offline metrics alone"
        )
        return replace(decision, reason=decision.reason + note, live=info)
    info["status"] = "judged"
    champion_figures = live.get("champion") or {}
    challenger_figures = live.get("challenger") or {}
    checks = [
        _check(
            LIVE,
            rule,
            _live_value(challenger_figures, rule.name),
            _live_value(champion_figures, rule.name),
            rule.tolerance,
        )
        for rule in rules.metrics
    ]
    failed = [c for c in checks if c["verdict"] == "regressed"]
    all_checks = (*decision.checks, *checks)
    live_note = f"on {rows} labelled live rows"
    if not failed:
        note = (
            f"; live traffic agrees: no live metric ({', '.join(r.name for r in rules.metrics)}) "
            f"regresses beyond its tolerance {live_note}"
        )
        return replace(decision, reason=decision.reason + note, checks=all_checks, live=info)
    lines = "; ".join(f"{_line(c)} regresses beyond tolerance" for c in failed)
    if decision.promote:
        reason = (
            f"held back on live traffic: wins offline, but {len(failed)} live check(s) failed "
            f"{live_note}: {lines} (offline: {decision.reason})"
        )
    else:
        reason = f"{decision.reason}; also {len(failed)} live check(s) failed {live_note}: {lines}"
    return replace(decision, promote=False, reason=reason, checks=all_checks, live=info)


def _decide_offline(
    challenger: Scores | Mapping[str, float],
    champion: Scores | Mapping[str, float] | None,
    policy: GatePolicy,
) -> GateDecision:
    """The gate on the test rows: overall, per segment, the primary's minimum."""
    new_scores = _as_scores(challenger)
    metric = policy.primary_metric
    new = _metric(new_scores.overall, metric, "challenger")
    if math.isnan(new):
        return GateDecision(
            False,
            f"challenger {metric} is NaN (undefined on this test split): not promoted",
            new,
            None,
            None,
        )
    if champion is None:
        return GateDecision(
            True, "no champion yet: the first valid model becomes champion", new, None, None
        )
    old_scores = _as_scores(champion)
    old = _metric(old_scores.overall, metric, "champion")
    if math.isnan(old):
        return GateDecision(True, f"champion {metric} is NaN: replaced", new, old, None)

    checks: list[dict[str, Any]] = []
    for rule in policy.metrics:
        checks.append(
            _check(
                OVERALL,
                rule,
                _metric(new_scores.overall, rule.name, "challenger"),
                _metric(old_scores.overall, rule.name, "champion"),
                rule.tolerance,
            )
        )
    small: dict[str, int] = {}
    judged = 0
    for segment in sorted(set(new_scores.segments) | set(old_scores.segments)):
        rows = int(new_scores.rows.get(segment, old_scores.rows.get(segment, 0)))
        if rows < policy.segments.min_rows:
            small[segment] = rows
            continue
        if segment not in new_scores.segments or segment not in old_scores.segments:
            raise GatePolicyError(f"segment {segment!r} is scored for one model only")
        judged += 1
        for rule in policy.metrics:
            checks.append(
                _check(
                    f"segment {segment}",
                    rule,
                    _metric(new_scores.segments[segment], rule.name, f"challenger {segment}"),
                    _metric(old_scores.segments[segment], rule.name, f"champion {segment}"),
                    rule.on_segments,
                )
            )
    primary = checks[[r.name for r in policy.metrics].index(metric)]
    delta = float(primary["delta"])
    if delta < policy.min_improvement - FLOAT_SLACK:
        primary["verdict"] = "regressed" if primary["verdict"] == "regressed" else "short_of_min"
    primary["min_improvement"] = policy.min_improvement

    segments_note = (
        f"{judged} segment(s) by {policy.segments.column!r} judged"
        + (
            f", {len(small)} with fewer than {policy.segments.min_rows} rows reported only "
            + ", ".join(f"{k} ({v})" for k, v in small.items())
            if small
            else ""
        )
        if policy.segments.column
        else "no segments configured"
    )
    failures = [c for c in checks if c["verdict"] in ("regressed", "short_of_min")]
    if failures:
        parts = []
        for check in failures:
            if check["verdict"] == "short_of_min":
                parts.append(
                    f"{_line(check)} improves by less than min_improvement {policy.min_improvement}"
                )
            else:
                parts.append(f"{_line(check)} regresses beyond tolerance")
        reason = (
            f"held back: {len(failures)} check(s) failed: "
            + "; ".join(parts[:5])
            + (f"; and {len(parts) - 5} more" if len(parts) > 5 else "")
            + f" ({segments_note})"
        )
        return GateDecision(False, reason, new, old, delta, tuple(checks), small)
    verdict = (
        "ties the champion"
        if abs(delta) <= FLOAT_SLACK
        else ("beats the champion" if delta > 0 else "is within tolerance of the champion")
    )
    undefined = sum(1 for c in checks if c["verdict"] == "undefined")
    reason = (
        f"promoted: {metric} {new:.6f} vs champion {old:.6f} (delta {delta:+.6f}) {verdict} "
        f"(min_improvement {policy.min_improvement}); no gated metric "
        f"({', '.join(r.name for r in policy.metrics)}) regresses beyond its tolerance "
        f"overall or per segment ({segments_note}"
        + (f"; {undefined} check(s) undefined on one class, not judged" if undefined else "")
        + ")"
    )
    return GateDecision(True, reason, new, old, delta, tuple(checks), small)


# ---- registry side ------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def score_rows(
    y: np.ndarray, proba: np.ndarray, segment_of: pd.Series | None, threshold: float
) -> Scores:
    """Scores of one model's probabilities on the test rows, overall and per segment."""
    overall = compute_metrics(y, proba, threshold)
    segments: dict[str, dict[str, float]] = {}
    rows: dict[str, int] = {}
    if segment_of is not None:
        names = segment_of.to_numpy()
        for name in sorted(set(names)):
            mask = names == name
            rows[str(name)] = int(mask.sum())
            segments[str(name)] = compute_metrics(y[mask], proba[mask], threshold)
    return Scores(overall=overall, segments=segments, rows=rows, threshold=threshold)


def threshold_of(tags: Mapping[str, str] | None) -> float | None:
    """The `decision_threshold` tag as a float, or None when absent or not a probability."""
    raw = (tags or {}).get(TAG_THRESHOLD)
    try:
        value = float(raw) if raw not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and 0.0 <= value <= 1.0 else None


def _version_threshold(model_name: str, version: Any) -> float:
    """The decision threshold a version serves with (its tag, else its run's, else 0.5)."""
    found = threshold_of(version.tags)
    if found is None and getattr(version, "run_id", None):
        try:
            found = threshold_of(mlflow_utils.client().get_run(version.run_id).data.tags)
        except MlflowException:
            found = None
    return DEFAULT_THRESHOLD if found is None else found


def _score_version(
    model_name: str, version: str, test: pd.DataFrame, use_case: str, policy: GatePolicy
) -> Scores:
    model = mlflow.sklearn.load_model(f"models:/{model_name}/{version}")
    registered = mlflow_utils.client().get_model_version(model_name, version)
    return score_rows(
        labels(test, use_case).to_numpy(),
        np.asarray(score_frame(model, test, use_case), dtype="float64"),
        policy.segments.labels_of(test),
        _version_threshold(model_name, registered),
    )


def _fmt(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _round(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) and math.isfinite(value) else value


def report_tag(decision: GateDecision, thresholds: Mapping[str, float | None]) -> str:
    """The gate report as one bounded JSON tag value: every check, compactly.

    If the full report would not fit a tag, the overall checks and the failed
    ones are kept and `truncated` says how many were left out (the run artifact
    `gate/decision_v<N>.json` always has them all).
    """
    columns = ["scope", "metric", "challenger", "champion", "delta", "tolerance", "verdict"]
    rows = [[_round(c.get(k)) for k in columns] for c in decision.checks]
    body: dict[str, Any] = {
        "promote": decision.promote,
        "thresholds": {k: _round(v) for k, v in thresholds.items()},
        "small_segments": dict(decision.small_segments),
        "live": {k: _round(v) for k, v in decision.live.items()},
        "columns": columns,
        "checks": rows,
    }
    text = json.dumps(body, separators=(",", ":"), allow_nan=True)
    if len(text) <= MAX_REPORT_TAG_CHARS:
        return text
    kept = [r for r in rows if r[0] in (OVERALL, LIVE) or r[-1] != "ok"]
    body["checks"], body["truncated"] = kept, len(rows) - len(kept)
    text = json.dumps(body, separators=(",", ":"), allow_nan=True)
    return text[:MAX_REPORT_TAG_CHARS]


def _log_checks(model_name: str, version: str, decision: GateDecision) -> None:
    """Every number the gate compared, one line each, in the task log."""
    for c in decision.checks:
        delta = "n/a" if c["delta"] is None else f"{c['delta']:+.6f}"
        log.info(
            "gate %s v%s | %-18s %-22s challenger %.6f champion %.6f delta %s tolerance %s: %s",
            model_name,
            version,
            c["scope"],
            c["metric"],
            c["challenger"],
            c["champion"],
            delta,
            c["tolerance"],
            c["verdict"],
        )
    for segment, rows in decision.small_segments.items():
        log.info(
            "gate %s v%s | segment %s has %d test rows: reported, too few to judge",
            model_name,
            version,
            segment,
            rows,
        )
    live = decision.live
    status = live.get("status")
    if status == "judged":
        log.info(
            "gate %s v%s | live: %s labelled shadow-scored rows (champion v%s vs challenger v%s, "
            "%s to %s), judged above",
            model_name,
            version,
            live.get("labelled_rows"),
            live.get("champion_version"),
            live.get("challenger_version"),
            live.get("start"),
            live.get("end"),
        )
    elif status == "too_few_rows":
        log.info(
            "gate %s v%s | live: only %s labelled shadow-scored rows (champion v%s vs challenger "
            "v%s), fewer than min_labelled_rows %s: decided on offline metrics alone",
            model_name,
            version,
            live.get("labelled_rows"),
            live.get("champion_version"),
            live.get("challenger_version"),
            live.get("min_labelled_rows"),
        )
    elif status == "unavailable":
        log.warning(
            "gate %s v%s | live: %s: decided on offline metrics alone",
            model_name,
            version,
            live.get("why"),
        )


def live_evidence(
    policy: GatePolicy,
    use_case: str,
    champion_version: str,
    challenger_version: str,
    thresholds: Mapping[str, float],
    store_url: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any] | None:
    """`live_comparison` of exactly this champion and challenger over the policy's window.

    None when the policy has no `live` block; {"error": why} when the prediction log cannot
    be read (the gate then decides on offline metrics and says so).
    """
    if policy.live is None:
        return None
    from serving.live_compare import live_comparison
    from serving.prediction_store import PredictionLogError

    end = now or datetime.now(UTC)
    start = end - timedelta(days=policy.live.window_days)
    try:
        found = live_comparison(
            store_url,
            start,
            end,
            use_case=use_case,
            threshold={"champion": thresholds["champion"], "challenger": thresholds["challenger"]},
            challenger_version=challenger_version,
            champion_version=champion_version,
        )
    except (PredictionLogError, OSError) as exc:
        log.warning("gate: live comparison unavailable: %s", exc)
        return {"error": f"prediction log unreadable: {exc}"}
    return {
        **found,
        "champion_version": champion_version,
        "challenger_version": challenger_version,
        "start": start.isoformat(timespec="seconds"),
        "end": end.isoformat(timespec="seconds"),
    }


def register_and_gate(
    run_id: str,
    model_name: str | None,
    features_dir: str,
    policy: GatePolicy | None = None,
    *,
    use_case: str = DEFAULT_USE_CASE,
    store_url: str | None = None,
) -> dict[str, Any]:
    """Register the run's model, compare it with the champion on the same test split, apply.

    The new version gets alias `challenger`; if the gate promotes it, alias
    `champion` moves to it and `challenger` is removed. With `live.hold_for_shadow`, a
    version that passes offline while the live check could not judge it is not promoted: it
    keeps `challenger` (tag `gate.decision` = awaiting_shadow) for `training.regate`. Both models are scored
    at their own decision thresholds (tag `decision_threshold`, else 0.5),
    overall and per segment. The decision and every number compared are
    written to the new version's tags (`gate.*`, `gate.report` as JSON), to
    the run (`gate/decision_v<N>.json`) and to the log.
    With a `live` block in the policy, the shadow-scored predictions of this version next to
    the champion's that carry a feedback label (prediction log `store_url`, None = the
    default) are compared too (`live_evidence`); too few such rows leaves the decision to the
    offline checks, and `gate.live` says which happened.
    `model_name` None means the use case's registered model name; the policy
    defaults to the use case's gate.yaml.
    Returns {"version", "promoted", "awaiting_shadow", "decision", "champion_version"}.
    """
    uc = get_use_case(use_case)
    FEATURE_CONTRACT_VERSION = uc.contract.FEATURE_CONTRACT_VERSION
    model_name = model_name or uc.model_name
    policy = policy or load_gate_policy(uc.config_path("gate"))
    mlflow_utils.configure()
    mlflow_client = mlflow_utils.client()
    run = mlflow_client.get_run(run_id)
    run_contract = run.data.tags.get(mlflow_utils.TAG_CONTRACT, "")
    if run_contract != FEATURE_CONTRACT_VERSION:
        raise PromotionError(
            f"run {run_id} was trained with feature contract {run_contract or '<none>'!r}, "
            f"but this code computes {FEATURE_CONTRACT_VERSION!r}; serving could not load it"
        )
    _, _, test = split_frames(load_features(features_dir, use_case))
    segment_note = ""
    if policy.segments.column and policy.segments.labels_of(test) is None:
        segment_note = (
            f"; segment column {policy.segments.column!r} is not in the test rows, "
            "so no per-segment check was possible"
        )
        log.warning("gate: %s", segment_note.lstrip("; "))

    model_uri = mlflow_utils.model_uri_for_run(run_id)
    registered = mlflow.register_model(model_uri, model_name)
    version = str(registered.version)
    threshold = threshold_of(run.data.tags)
    challenger_threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    mlflow_utils.set_version_tags(
        model_name, version, {TAG_THRESHOLD: repr(float(challenger_threshold))}
    )
    challenger_scores = _score_version(model_name, version, test, use_case, policy)
    mlflow_utils.set_version_tags(
        model_name,
        version,
        {
            mlflow_utils.TAG_CONTRACT: run_contract,
            mlflow_utils.TAG_DATA_SHA: run.data.tags.get(mlflow_utils.TAG_DATA_SHA, ""),
            mlflow_utils.TAG_USE_CASE: use_case,
            "gate.features_dir": str(features_dir),
            **{f"test_{k}": _fmt(v) for k, v in challenger_scores.overall.items()},
        },
    )
    previous = mlflow_utils.alias_version(model_name, CHALLENGER)
    if previous is not None and (previous.tags or {}).get(TAG_DECISION) == AWAITING_SHADOW:
        # It loses the alias (so shadow scoring) to this version before a live verdict.
        mlflow_utils.set_version_tags(
            model_name,
            str(previous.version),
            {TAG_DECISION: SUPERSEDED, "gate.superseded_by": version},
        )
        log.info(
            "gate %s v%s: was awaiting shadow traffic, superseded by v%s as challenger",
            model_name,
            previous.version,
            version,
        )
    mlflow_client.set_registered_model_alias(model_name, CHALLENGER, version)

    current = mlflow_utils.alias_version(model_name, CHAMPION)
    champion_version = str(current.version) if current is not None else None
    champion_threshold: float | None = None
    if current is None:
        decision = decide_promotion(challenger_scores, None, policy)
    else:
        champion_contract = (current.tags or {}).get(mlflow_utils.TAG_CONTRACT, "")
        if champion_contract != FEATURE_CONTRACT_VERSION:
            # Its inputs no longer exist: judge the challenger as if there were no champion.
            alone = decide_promotion(challenger_scores, None, policy)
            decision = replace(
                alone,
                reason=f"champion v{champion_version} uses feature contract "
                f"{champion_contract or '<none>'!r}, not {FEATURE_CONTRACT_VERSION!r}, so it "
                f"cannot be scored on these features; "
                + ("the challenger replaces it" if alone.promote else alone.reason),
            )
        else:
            assert champion_version is not None
            champion_scores = _score_version(model_name, champion_version, test, use_case, policy)
            champion_threshold = champion_scores.threshold
            live = live_evidence(
                policy,
                use_case,
                champion_version,
                version,
                {"champion": champion_threshold, "challenger": challenger_threshold},
                store_url,
            )
            decision = decide_promotion(challenger_scores, champion_scores, policy, live)
    if segment_note:
        decision = replace(decision, reason=decision.reason + segment_note)
    offline_reason = decision.reason
    awaiting = bool(
        decision.promote
        and policy.live is not None
        and policy.live.hold_for_shadow
        and decision.live.get("status") in NOT_YET_JUDGED
    )
    if awaiting:
        assert policy.live is not None
        decision = replace(
            decision,
            promote=False,
            reason=f"awaiting shadow traffic: passes the offline checks, so v{version} stays "
            f"challenger, shadow-scored next to champion v{champion_version}, until the daily "
            f"re-gate finds at least {policy.live.min_labelled_rows} labelled shadow-scored "
            f"rows (live.hold_for_shadow; held back after live.max_wait_days "
            f"{policy.live.max_wait_days:g} without them). Offline: {offline_reason}",
        )

    thresholds = {"challenger": challenger_threshold, "champion": champion_threshold}
    record = {
        **decision.as_dict(),
        "awaiting_shadow": awaiting,
        "compared_with_version": champion_version,
        "thresholds": thresholds,
        "policy": policy.as_dict(),
        "n_test": len(test),
        "decided_at": _now(),
    }
    _log_checks(model_name, version, decision)
    mlflow_utils.set_version_tags(
        model_name,
        version,
        {
            "gate.promote": str(decision.promote).lower(),
            "gate.reason": decision.reason[:MAX_REPORT_TAG_CHARS],
            "gate.primary_metric": policy.primary_metric,
            "gate.challenger_value": _fmt(decision.challenger_value),
            "gate.champion_value": _fmt(decision.champion_value),
            "gate.delta": _fmt(decision.delta),
            "gate.failed_checks": str(len(decision.failures)),
            "gate.compared_with_version": champion_version or "",
            "gate.policy": json.dumps(policy.as_dict(), sort_keys=True),
            "gate.report": report_tag(decision, thresholds),
            "gate.live": str(decision.live.get("status", "not_configured")),
            "gate.live_labelled_rows": str(decision.live.get("labelled_rows", "")),
            TAG_DECISION: AWAITING_SHADOW
            if awaiting
            else (PROMOTED if decision.promote else HELD_BACK),
            "gate.offline_reason": offline_reason[:MAX_REPORT_TAG_CHARS],
            **({"gate.awaiting_since": record["decided_at"]} if awaiting else {}),
        },
    )
    if awaiting:
        log.info(
            "gate %s v%s | awaiting shadow traffic: not promoted now, keeps alias %s",
            model_name,
            version,
            CHALLENGER,
        )
    if decision.promote:
        mlflow_client.set_registered_model_alias(model_name, CHAMPION, version)
        mlflow_client.delete_registered_model_alias(model_name, CHALLENGER)
        mlflow_utils.set_version_tags(
            model_name, version, {"promoted_at": record["decided_at"], "promoted_by": "gate"}
        )
        champion_version = version
    mlflow_utils.set_run_tags(
        run_id,
        {
            "gate.promote": str(decision.promote).lower(),
            "gate.reason": decision.reason[:MAX_REPORT_TAG_CHARS],
            "registered_version": f"{model_name}/{version}",
        },
    )
    mlflow_client.log_dict(run_id, record, f"gate/decision_v{version}.json")
    log.info("model %s v%s: %s", model_name, version, decision.reason)
    return {
        "version": version,
        "promoted": decision.promote,
        "awaiting_shadow": awaiting,
        "decision": record,
        "champion_version": champion_version,
    }


def rollback(
    model_name: str,
    version: str,
    *,
    reason: str,
    by: str | None = None,
    allow_contract_mismatch: bool = False,
    use_case: str = DEFAULT_USE_CASE,
) -> dict[str, Any]:
    """Point `champion` at an existing `version` and record who did it and why.

    Refuses a version whose feature contract differs from what this code
    computes (serving would refuse to load it) unless `allow_contract_mismatch`.
    """
    FEATURE_CONTRACT_VERSION = get_use_case(use_case).contract.FEATURE_CONTRACT_VERSION
    mlflow_utils.configure()
    mlflow_client = mlflow_utils.client()
    try:
        target = mlflow_client.get_model_version(model_name, str(version))
    except MlflowException as exc:
        raise PromotionError(
            f"model {model_name!r} has no version {version!r} at {mlflow.get_tracking_uri()}"
        ) from exc
    contract = (target.tags or {}).get(mlflow_utils.TAG_CONTRACT, "")
    if contract != FEATURE_CONTRACT_VERSION and not allow_contract_mismatch:
        raise PromotionError(
            f"{model_name} v{version} was trained with feature contract {contract or '<none>'!r} "
            f"but serving computes {FEATURE_CONTRACT_VERSION!r}; pass --force to roll back anyway"
        )
    previous = mlflow_utils.alias_version(model_name, CHAMPION)
    previous_version = str(previous.version) if previous is not None else None
    who = by or getpass.getuser()
    when = _now()
    mlflow_client.set_registered_model_alias(model_name, CHAMPION, str(version))
    challenger = mlflow_utils.alias_version(model_name, CHALLENGER)
    if challenger is not None and str(challenger.version) == str(version):
        mlflow_client.delete_registered_model_alias(model_name, CHALLENGER)
    mlflow_utils.set_version_tags(
        model_name,
        str(version),
        {
            "promoted_at": when,
            "promoted_by": who,
            "rollback.by": who,
            "rollback.reason": reason,
            "rollback.at": when,
            "rollback.from_version": previous_version or "",
        },
    )
    log.info("%s champion v%s -> v%s by %s: %s", model_name, previous_version, version, who, reason)
    return {
        "model": model_name,
        "champion_version": str(version),
        "previous_version": previous_version,
        "by": who,
        "reason": reason,
        "at": when,
    }
