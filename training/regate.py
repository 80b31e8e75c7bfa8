"""The shadow phase's verdict: re-gate the challenger that awaits live traffic.

With `live.hold_for_shadow` in a use case's gate.yaml, `register_and_gate` does not promote a
challenger that passes the offline checks while the prediction log has too few labelled
shadow-scored rows of it: the version keeps alias `challenger` (tag `gate.decision` =
awaiting_shadow), so serving shadow-scores it (`serving.shadow`) and `/feedback` labels
accumulate. `regate_challenger`, run daily by the drift_check DAG, then decides on the live
evidence for exactly that challenger next to the current champion
(`training.promote.live_evidence`, the gate's `live` metrics and tolerances):

- at least `min_labelled_rows` labelled rows and no live metric regressing beyond its
  tolerance: promoted (`champion` moves to it, `challenger` is removed);
- a live regression: held back for good, and `challenger` is removed so shadow scoring stops;
- too few rows (or an unreadable log): it keeps waiting, unless it has waited longer than
  `live.max_wait_days` since registration, then it is held back with that reason.

Every number and the reason go to the version's tags (`gate.decision`, `gate.reason`,
`gate.live`, `gate.live_labelled_rows`, `gate.live_report`, `gate.regated_at`) and the log.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from core.usecases import DEFAULT_USE_CASE, get_use_case
from training import mlflow_utils
from training.promote import (
    AWAITING_SHADOW,
    CHALLENGER,
    CHAMPION,
    HELD_BACK,
    MAX_REPORT_TAG_CHARS,
    PROMOTED,
    TAG_DECISION,
    GateDecision,
    GatePolicy,
    _apply_live,
    _log_checks,
    _version_threshold,
    live_evidence,
    load_gate_policy,
    report_tag,
)

log = logging.getLogger(__name__)

WAITING = "waiting"
NO_CHALLENGER = "no_challenger"
NOT_AWAITING = "not_awaiting"
NOT_CONFIGURED = "not_configured"


def _since(version: Any) -> datetime:
    """When the version started awaiting shadow traffic (tag, else its registration time)."""
    raw = (version.tags or {}).get("gate.awaiting_since")
    if raw:
        try:
            found = datetime.fromisoformat(raw)
            return found if found.tzinfo else found.replace(tzinfo=UTC)
        except ValueError:
            log.warning("re-gate: unreadable gate.awaiting_since %r; using registration time", raw)
    return datetime.fromtimestamp(int(version.creation_timestamp) / 1000, tz=UTC)


def _float_tag(tags: dict[str, str], key: str) -> float:
    try:
        return float(tags.get(key) or "nan")
    except ValueError:
        return float("nan")


def regate_challenger(
    use_case: str = DEFAULT_USE_CASE,
    model_name: str | None = None,
    policy: GatePolicy | None = None,
    *,
    store_url: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Decide on the challenger that awaits shadow traffic (see the module docstring).

    Returns {"status": promoted | held_back | waiting | no_challenger | not_awaiting |
    not_configured, "model_name", "version", "champion_version", "reason", "live"}; nothing
    is changed unless the status is promoted or held_back (waiting only updates the tags).
    """
    uc = get_use_case(use_case)
    model_name = model_name or uc.model_name
    policy = policy or load_gate_policy(uc.config_path("gate"))
    now = now or datetime.now(UTC)
    mlflow_utils.configure()
    client = mlflow_utils.client()
    result: dict[str, Any] = {"model_name": model_name, "use_case": use_case}

    challenger = mlflow_utils.alias_version(model_name, CHALLENGER)
    if challenger is None:
        reason = f"{model_name} has no version with alias {CHALLENGER!r}: nothing to re-gate"
        log.info("re-gate: %s", reason)
        return {**result, "status": NO_CHALLENGER, "version": None, "reason": reason}
    version = str(challenger.version)
    tags = dict(challenger.tags or {})
    result["version"] = version
    if tags.get(TAG_DECISION) != AWAITING_SHADOW:
        reason = (
            f"{model_name}@{CHALLENGER} is v{version} with gate.decision "
            f"{tags.get(TAG_DECISION, '<none>')!r}, not {AWAITING_SHADOW!r}: nothing to re-gate"
        )
        log.info("re-gate: %s", reason)
        return {**result, "status": NOT_AWAITING, "reason": reason}
    if policy.live is None:
        reason = (
            f"{model_name} v{version} awaits shadow traffic but the gate policy has no `live` "
            "block to judge it with: left as it is"
        )
        log.warning("re-gate: %s", reason)
        return {**result, "status": NOT_CONFIGURED, "reason": reason}
    rules = policy.live

    champion = mlflow_utils.alias_version(model_name, CHAMPION)
    when = now.isoformat(timespec="seconds")
    if champion is None:
        decision = GateDecision(
            True,
            "promoted: no champion any more to compare with; the challenger passed the "
            "offline checks",
            _float_tag(tags, "gate.challenger_value"),
            None,
            None,
            live={"status": "no_comparison"},
        )
        champion_version = None
    else:
        champion_version = str(champion.version)
        thresholds = {
            "champion": _version_threshold(model_name, champion),
            "challenger": _version_threshold(model_name, challenger),
        }
        found = live_evidence(
            policy, use_case, champion_version, version, thresholds, store_url, now=now
        )
        offline = tags.get("gate.offline_reason") or "passed at registration"
        base = GateDecision(
            True,
            f"promoted after shadow traffic (offline: {offline})",
            _float_tag(tags, "gate.challenger_value"),
            _float_tag(tags, "gate.champion_value"),
            _float_tag(tags, "gate.delta"),
        )
        decision = _apply_live(base, policy, found)
        result["thresholds"] = thresholds
    result["champion_version"] = champion_version
    status = str(decision.live.get("status"))
    rows = decision.live.get("labelled_rows", "")
    waited_days = (now - _since(challenger)).total_seconds() / 86400.0
    result["waited_days"] = round(waited_days, 3)

    if status in ("judged", "no_comparison"):
        outcome = PROMOTED if decision.promote else HELD_BACK
        reason = decision.reason
    elif waited_days > rules.max_wait_days:
        outcome = HELD_BACK
        reason = (
            f"held back: waited {waited_days:.1f} days for shadow traffic, longer than "
            f"live.max_wait_days {rules.max_wait_days:g}, and the live check could not judge it "
            f"({status}: {rows} labelled shadow-scored row(s) next to champion "
            f"v{champion_version}, min_labelled_rows {rules.min_labelled_rows})"
        )
        decision = replace(decision, promote=False, reason=reason)
    else:
        outcome = WAITING
        reason = (
            f"still awaiting shadow traffic: {rows} labelled shadow-scored row(s) next to "
            f"champion v{champion_version} ({status}), fewer than min_labelled_rows "
            f"{rules.min_labelled_rows}; waited {waited_days:.1f} of live.max_wait_days "
            f"{rules.max_wait_days:g} days"
        )
        if status == "unavailable":
            reason += f"; {decision.live.get('why')}"

    _log_checks(model_name, version, decision)
    new_tags: dict[str, Any] = {
        "gate.regated_at": when,
        "gate.live": status,
        "gate.live_labelled_rows": str(rows),
        "gate.live_report": report_tag(decision, result.get("thresholds", {})),
        "gate.live_waited_days": f"{waited_days:.3f}",
    }
    if outcome == WAITING:
        new_tags["gate.live_status_reason"] = reason[:MAX_REPORT_TAG_CHARS]
        mlflow_utils.set_version_tags(model_name, version, new_tags)
        log.info("re-gate %s v%s: %s", model_name, version, reason)
        return {**result, "status": WAITING, "reason": reason, "live": dict(decision.live)}

    new_tags.update(
        {
            TAG_DECISION: outcome,
            "gate.promote": str(outcome == PROMOTED).lower(),
            "gate.reason": reason[:MAX_REPORT_TAG_CHARS],
        }
    )
    mlflow_utils.set_version_tags(model_name, version, new_tags)
    if outcome == PROMOTED:
        client.set_registered_model_alias(model_name, CHAMPION, version)
        mlflow_utils.set_version_tags(
            model_name, version, {"promoted_at": when, "promoted_by": "gate (shadow re-gate)"}
        )
        result["champion_version"] = version
    client.delete_registered_model_alias(model_name, CHALLENGER)
    log.info(
        "re-gate %s v%s: %s; alias %s removed%s",
        model_name,
        version,
        reason,
        CHALLENGER,
        f", {CHAMPION} -> v{version}" if outcome == PROMOTED else " (shadow scoring stops)",
    )
    return {**result, "status": outcome, "reason": reason, "live": dict(decision.live)}
