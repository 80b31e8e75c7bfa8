"""Register a trained model and let the gate decide whether it replaces the champion.

Promotion is by alias: the registered model `review-sentiment` has at most
one `champion` (what serving loads) and one `challenger` (the latest version
that did not win). The decision itself is `decide_promotion`, a pure function
of two metric dicts and a `GatePolicy` read from `training/config/gate.yaml`,
so it is unit-tested on numbers, and `register_and_gate` only does I/O around
it: register, re-score both models on the same test rows, apply, record.

Gate semantics. `delta` is challenger minus champion on `primary_metric`,
sign-flipped when `higher_is_better` is false, so a positive delta is always
an improvement. The challenger is promoted iff both hold:

- `delta >= -tolerance`: it is not worse than the champion by more than
  `tolerance` (>= 0);
- `delta >= min_improvement`: it is better by at least `min_improvement`.

Both bound the same delta, so the effective bar is
`max(-tolerance, min_improvement)`: the stricter condition wins. With the
defaults (0, 0) a tie promotes (a retrained model on fresher data replaces
an equal one) and any loss keeps the champion. A positive `min_improvement`
demands a real gain (and makes `tolerance` irrelevant); a negative
`min_improvement` admits a slightly worse challenger, and then `tolerance`
caps how much worse. Comparisons forgive 1e-12 of floating-point rounding,
so values exactly on a boundary behave as written (0.89 vs 0.90 with
tolerance 0.01 passes). A NaN challenger value never promotes; a missing
champion, or a champion whose value is NaN, is replaced.
"""

from __future__ import annotations

import getpass
import json
import logging
import math
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.exceptions import MlflowException

from core.usecases import DEFAULT_USE_CASE, get_use_case
from training import mlflow_utils
from training.data import labels, load_features, split_frames
from training.evaluate import LOWER_IS_BETTER, METRIC_NAMES, compute_metrics, score_frame

log = logging.getLogger(__name__)

GATE_CONFIG = Path(__file__).with_name("config") / "gate.yaml"
CHAMPION = "champion"
CHALLENGER = "challenger"
FLOAT_SLACK = 1e-12


class GatePolicyError(ValueError):
    """A gate policy that cannot be applied (unknown metric, negative tolerance, ...)."""


class PromotionError(RuntimeError):
    """A registry operation the gate or a rollback cannot carry out."""


@dataclass(frozen=True)
class GatePolicy:
    """How a challenger is compared with the champion (see the module docstring)."""

    primary_metric: str = "roc_auc"
    tolerance: float = 0.0
    min_improvement: float = 0.0
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        if self.primary_metric not in METRIC_NAMES:
            raise GatePolicyError(
                f"primary_metric {self.primary_metric!r} is not a computed metric; "
                f"choose one of {list(METRIC_NAMES)}"
            )
        if self.higher_is_better == (self.primary_metric in LOWER_IS_BETTER):
            direction = "false" if self.primary_metric in LOWER_IS_BETTER else "true"
            raise GatePolicyError(
                f"higher_is_better must be {direction} for {self.primary_metric!r}"
            )
        for name in ("tolerance", "min_improvement"):
            if not math.isfinite(getattr(self, name)):
                raise GatePolicyError(f"{name} must be a finite number, got {getattr(self, name)}")
        if self.tolerance < 0:
            raise GatePolicyError(f"tolerance must be >= 0, got {self.tolerance}")

    @property
    def bar(self) -> float:
        """The smallest delta that promotes: max(-tolerance, min_improvement)."""
        return max(-self.tolerance, self.min_improvement)


def load_gate_policy(path: str | Path = GATE_CONFIG) -> GatePolicy:
    """The GatePolicy in a YAML file (default training/config/gate.yaml)."""
    path = Path(path)
    data = yaml.safe_load(path.read_text()) or {}
    known = {f.name for f in fields(GatePolicy)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise GatePolicyError(f"{path}: unknown gate keys {unknown}; known: {sorted(known)}")
    try:
        return GatePolicy(
            primary_metric=str(data.get("primary_metric", GatePolicy.primary_metric)),
            tolerance=float(data.get("tolerance", GatePolicy.tolerance)),
            min_improvement=float(data.get("min_improvement", GatePolicy.min_improvement)),
            higher_is_better=bool(data.get("higher_is_better", GatePolicy.higher_is_better)),
        )
    except GatePolicyError as exc:
        raise GatePolicyError(f"{path}: {exc}") from exc


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided and the numbers it decided on."""

    promote: bool
    reason: str
    challenger_value: float
    champion_value: float | None
    delta: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _metric(metrics: dict[str, float], name: str, who: str) -> float:
    if name not in metrics:
        raise GatePolicyError(f"{who} metrics lack {name!r}; got {sorted(metrics)}")
    return float(metrics[name])


def decide_promotion(
    challenger: dict[str, float], champion: dict[str, float] | None, policy: GatePolicy
) -> GateDecision:
    """Pure gate: should `challenger` replace `champion` under `policy`?"""
    metric = policy.primary_metric
    new = _metric(challenger, metric, "challenger")
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
    old = _metric(champion, metric, "champion")
    if math.isnan(old):
        return GateDecision(True, f"champion {metric} is NaN: replaced", new, old, None)
    delta = new - old if policy.higher_is_better else old - new
    shown = f"{metric} {new:.6f} vs champion {old:.6f} (delta {delta:+.6f})"
    if delta < -policy.tolerance - FLOAT_SLACK:
        return GateDecision(
            False,
            f"{shown} is worse than the champion by more than tolerance {policy.tolerance}",
            new,
            old,
            delta,
        )
    if delta < policy.min_improvement - FLOAT_SLACK:
        return GateDecision(
            False,
            f"{shown} improves by less than min_improvement {policy.min_improvement}",
            new,
            old,
            delta,
        )
    verdict = (
        "ties the champion"
        if abs(delta) <= FLOAT_SLACK
        else ("beats the champion" if delta > 0 else "is within tolerance of the champion")
    )
    return GateDecision(True, f"{shown} {verdict}", new, old, delta)


# ---- registry side ------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _test_metrics(model_uri: str, test: Any, use_case: str) -> dict[str, float]:
    model = mlflow.sklearn.load_model(model_uri)
    return compute_metrics(labels(test, use_case).to_numpy(), score_frame(model, test, use_case))


def _fmt(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def register_and_gate(
    run_id: str,
    model_name: str | None,
    features_dir: str,
    policy: GatePolicy | None = None,
    *,
    use_case: str = DEFAULT_USE_CASE,
) -> dict[str, Any]:
    """Register the run's model, compare it with the champion on the same test split, apply.

    The new version gets alias `challenger`; if the gate promotes it, alias
    `champion` moves to it and `challenger` is removed. The decision is
    written to the new version's tags (`gate.*`) and to the run.
    `model_name` None means the use case's registered model name; the policy
    defaults to the use case's gate.yaml.
    Returns {"version", "promoted", "decision", "champion_version"}.
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

    model_uri = mlflow_utils.model_uri_for_run(run_id)
    registered = mlflow.register_model(model_uri, model_name)
    version = str(registered.version)
    challenger_metrics = _test_metrics(f"models:/{model_name}/{version}", test, use_case)
    mlflow_utils.set_version_tags(
        model_name,
        version,
        {
            mlflow_utils.TAG_CONTRACT: run_contract,
            mlflow_utils.TAG_DATA_SHA: run.data.tags.get(mlflow_utils.TAG_DATA_SHA, ""),
            mlflow_utils.TAG_USE_CASE: use_case,
            "gate.features_dir": str(features_dir),
            **{f"test_{k}": _fmt(v) for k, v in challenger_metrics.items()},
        },
    )
    mlflow_client.set_registered_model_alias(model_name, CHALLENGER, version)

    current = mlflow_utils.alias_version(model_name, CHAMPION)
    champion_version = str(current.version) if current is not None else None
    if current is None:
        decision = decide_promotion(challenger_metrics, None, policy)
    else:
        champion_contract = (current.tags or {}).get(mlflow_utils.TAG_CONTRACT, "")
        if champion_contract != FEATURE_CONTRACT_VERSION:
            # Its inputs no longer exist: judge the challenger as if there were no champion.
            alone = decide_promotion(challenger_metrics, None, policy)
            decision = replace(
                alone,
                reason=f"champion v{champion_version} uses feature contract "
                f"{champion_contract or '<none>'!r}, not {FEATURE_CONTRACT_VERSION!r}, so it "
                f"cannot be scored on these features; "
                + ("the challenger replaces it" if alone.promote else alone.reason),
            )
        else:
            champion_metrics = _test_metrics(
                f"models:/{model_name}/{champion_version}", test, use_case
            )
            decision = decide_promotion(challenger_metrics, champion_metrics, policy)

    record = {
        **decision.as_dict(),
        "compared_with_version": champion_version,
        "policy": asdict(policy),
        "decided_at": _now(),
    }
    mlflow_utils.set_version_tags(
        model_name,
        version,
        {
            "gate.promote": str(decision.promote).lower(),
            "gate.reason": decision.reason,
            "gate.challenger_value": _fmt(decision.challenger_value),
            "gate.champion_value": _fmt(decision.champion_value),
            "gate.delta": _fmt(decision.delta),
            "gate.compared_with_version": champion_version or "",
            "gate.policy": json.dumps(asdict(policy), sort_keys=True),
        },
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
            "gate.reason": decision.reason,
            "registered_version": f"{model_name}/{version}",
        },
    )
    mlflow_client.log_dict(run_id, record, f"gate/decision_v{version}.json")
    log.info("model %s v%s: %s", model_name, version, decision.reason)
    return {
        "version": version,
        "promoted": decision.promote,
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
