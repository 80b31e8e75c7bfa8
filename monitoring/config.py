"""Drift and concept-drift thresholds as data.

The values live in a use case's drift.yaml (the platform's
`monitoring/config/drift.yaml` for reviews, `usecases/<name>/drift.yaml` when a
use case has its own); the drift_check DAG passes its Params as overrides, so
an operator can loosen or tighten one threshold for one run without a code
change. Every field is required in the YAML, so a value is never silently taken
from a default hidden in code; the one exception is `checks`, which names the
checks a use case runs and defaults to those that fit its kind (`KIND_CHECKS`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).with_name("config")
DEFAULT_THRESHOLDS_PATH = CONFIG_DIR / "drift.yaml"
DEFAULT_LEXICON_PATH = CONFIG_DIR / "lexicon.yaml"

# The checks monitoring.drift.check_drift can run, in report order.
CHECK_NAMES: tuple[str, ...] = (
    "feature_drift",
    "feature_psi",
    "prediction_drift",
    "text_domain",
    "text_descriptors",
)
# The checks that fit each kind of use case (core/usecases.py): a tabular use case has
# numeric features and a score; a text use case also has the text itself, for its
# descriptors and the domain classifier. A drift.yaml may name its own `checks`.
KIND_CHECKS: dict[str, tuple[str, ...]] = {
    "tabular": ("feature_drift", "feature_psi", "prediction_drift"),
    "text": CHECK_NAMES,
}
TEXT_CHECKS: frozenset[str] = frozenset({"text_domain", "text_descriptors"})
OPTIONAL_FIELDS: frozenset[str] = frozenset({"checks"})

# How the checks' evidence becomes the day's decision (see monitoring.drift).
DECISION_METHODS: tuple[str, ...] = ("combined", "votes")


@dataclass(frozen=True)
class DriftThresholds:
    """Every number the drift decision and the concept-drift decision depend on.

    See `monitoring/config/drift.yaml` for what each field means.
    """

    min_rows: int
    min_reference_rows: int
    feature_method: str
    feature_threshold: float
    per_feature_method: dict[str, str]
    per_feature_threshold: dict[str, float]
    drifted_share: float
    psi_bins: int
    psi_threshold: float
    prediction_method: str
    prediction_threshold: float
    text_method: str
    text_threshold: float
    descriptor_method: str
    descriptor_threshold: float
    descriptor_drifted_share: float
    check_weights: dict[str, float]
    min_votes: float
    decision_method: str
    check_null_mean: dict[str, float]
    check_null_sd: dict[str, float]
    combine_weights: dict[str, float]
    combined_null_sd: float
    z_cap: float
    combined_threshold: float
    decision_threshold: float
    min_labels: int
    max_accuracy_drop: float
    max_roc_auc_drop: float
    # The checks to run, in any order; empty: those of the use case's kind (KIND_CHECKS).
    checks: tuple[str, ...] = ()

    def enabled_checks(self, kind: str) -> tuple[str, ...]:
        """The checks this use case runs, in report order: `checks`, else its kind's."""
        if kind not in KIND_CHECKS:
            raise ValueError(
                f"no drift checks for use-case kind {kind!r}; known {list(KIND_CHECKS)}"
            )
        chosen = set(self.checks or KIND_CHECKS[kind])
        return tuple(name for name in CHECK_NAMES if name in chosen)

    def __post_init__(self) -> None:
        for name in ("drifted_share", "descriptor_drifted_share", "decision_threshold"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"threshold {name} must be within (0, 1], got {value}")
        for name in ("min_rows", "min_reference_rows", "min_labels"):
            if getattr(self, name) < 1:
                raise ValueError(f"threshold {name} must be >= 1, got {getattr(self, name)}")
        if self.psi_bins < 2:
            raise ValueError(f"threshold psi_bins must be >= 2, got {self.psi_bins}")
        for name in ("psi_threshold", "max_accuracy_drop", "max_roc_auc_drop"):
            if getattr(self, name) < 0:
                raise ValueError(f"threshold {name} must be >= 0, got {getattr(self, name)}")
        unknown = sorted(set(self.checks) - set(CHECK_NAMES))
        if unknown:
            raise ValueError(f"checks {unknown} are not drift checks; known: {list(CHECK_NAMES)}")
        weighted = set(self.checks or CHECK_NAMES)
        if not weighted <= set(self.check_weights) or set(self.check_weights) - set(CHECK_NAMES):
            raise ValueError(
                f"check_weights must give a weight to each of {sorted(weighted)} (and name "
                f"only checks of {list(CHECK_NAMES)}); got {sorted(self.check_weights)}"
            )
        if any(w < 0 for w in self.check_weights.values()):
            raise ValueError(f"check_weights must be >= 0, got {self.check_weights}")
        reachable = sum(self.check_weights[name] for name in weighted)
        if not 0 < self.min_votes <= reachable:
            raise ValueError(
                f"min_votes={self.min_votes} can never be reached with check_weights "
                f"{self.check_weights} of checks {sorted(weighted)} (must be > 0 and <= "
                "their sum)"
            )

        if self.decision_method not in DECISION_METHODS:
            raise ValueError(
                f"decision_method must be one of {list(DECISION_METHODS)}, "
                f"got {self.decision_method!r}"
            )
        for name in ("check_null_mean", "check_null_sd", "combine_weights"):
            if set(getattr(self, name)) != set(CHECK_NAMES):
                raise ValueError(
                    f"{name} must give a value to each of {list(CHECK_NAMES)}; "
                    f"got {sorted(getattr(self, name))}"
                )
        if any(sd <= 0 for sd in self.check_null_sd.values()):
            raise ValueError(f"check_null_sd must be > 0, got {self.check_null_sd}")
        if any(w < 0 for w in self.combine_weights.values()):
            raise ValueError(f"combine_weights must be >= 0, got {self.combine_weights}")
        for name in ("combined_null_sd", "z_cap"):
            if getattr(self, name) <= 0:
                raise ValueError(f"threshold {name} must be > 0, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (logged with every result, so a decision can be replayed)."""
        return dataclasses.asdict(self)

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> DriftThresholds:
        """A copy with some fields replaced, values coerced to the field's type.

        Airflow Params and CLI flags often arrive as strings or ints where a float
        is meant; coercing here keeps the rest of the code free of such checks.
        Mapping fields (check_weights, per_feature_*) are merged key by key, so
        an override can change one weight without restating the others.
        """
        if not overrides:
            return self
        changes = _coerce(dict(overrides))
        for name, value in changes.items():
            current = getattr(self, name)
            if isinstance(current, dict):
                changes[name] = {**current, **value}
        return dataclasses.replace(self, **changes)


_FIELD_TYPES: dict[str, str] = {f.name: str(f.type) for f in dataclasses.fields(DriftThresholds)}


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(values) - set(_FIELD_TYPES))
    if unknown:
        raise ValueError(
            f"unknown drift threshold(s) {unknown}; expected some of {sorted(_FIELD_TYPES)}"
        )
    out: dict[str, Any] = {}
    for name, value in values.items():
        kind = _FIELD_TYPES[name]
        try:
            if kind == "int":
                number = float(value)
                if not number.is_integer():
                    raise ValueError("not a whole number")
                out[name] = int(number)
            elif kind == "float":
                out[name] = float(value)
            elif kind == "str":
                if not isinstance(value, str) or not value:
                    raise ValueError("expected a non-empty string")
                out[name] = value
            elif name == "checks":
                if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                    raise ValueError("expected a list of check names")
                out[name] = tuple(value)
            else:
                if not isinstance(value, Mapping):
                    raise ValueError("expected a mapping {column: value}")
                cast = float if "float" in kind else str
                out[name] = {str(k): cast(v) for k, v in value.items()}
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"drift threshold {name}={value!r} is not a valid {kind}: {exc}"
            ) from exc
    return out


def load_thresholds(
    overrides: Mapping[str, Any] | None = None, path: str | Path | None = None
) -> DriftThresholds:
    """Thresholds from YAML (default `monitoring/config/drift.yaml`), then `overrides`."""
    source = Path(path) if path is not None else DEFAULT_THRESHOLDS_PATH
    if not source.is_file():
        raise FileNotFoundError(f"drift thresholds file not found: {source}")
    raw = yaml.safe_load(source.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{source} must hold a mapping of threshold names to values")
    missing = sorted(set(_FIELD_TYPES) - OPTIONAL_FIELDS - set(raw))
    if missing:
        raise ValueError(f"{source} is missing drift threshold(s) {missing}")
    base = DriftThresholds(**_coerce(raw))
    return base.with_overrides(overrides)


def load_lexicon(path: str | Path | None = None) -> dict[str, frozenset[str]]:
    """Positive/negative word sets for the lexicon-polarity text descriptor."""
    source = Path(path) if path is not None else DEFAULT_LEXICON_PATH
    raw = yaml.safe_load(source.read_text()) or {}
    try:
        return {
            kind: frozenset(str(w).lower() for w in raw[kind]) for kind in ("positive", "negative")
        }
    except KeyError as exc:
        raise ValueError(f"{source} needs 'positive' and 'negative' word lists") from exc
