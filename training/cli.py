"""`python -m training ...`: look at the registry, roll back, train end to end.

    python -m training champion [--model NAME]
    python -m training versions [--model NAME]
    python -m training rollback VERSION --reason "why" [--by WHO] [--force]
    python -m training train --features DIR [--param C=8] [--data-sha256 HASH]

Plain-text output, meant for an on-call person: which version serves, how it
scored, where it came from, and one command to put the previous one back.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException

from core.settings import get_settings
from training import mlflow_utils
from training.data import FeatureDataError
from training.evaluate import METRIC_NAMES
from training.models import ModelParamsError, parse_param_overrides
from training.promote import (
    CHAMPION,
    GatePolicyError,
    PromotionError,
    load_gate_policy,
    register_and_gate,
    rollback,
)

TABLE_METRICS = ("roc_auc", "accuracy", "f1", "log_loss", "ece")


class RegistryLookupError(LookupError):
    """The registered model (or its champion) does not exist."""


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned plain-text table with a dashed rule under the header."""
    cells = [[str(h) for h in headers], *[["" if v is None else str(v) for v in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _short(value: str | None, width: int = 12) -> str:
    return (value or "")[:width]


def _metric(tags: dict[str, str], name: str) -> str:
    raw = tags.get(f"test_{name}", "")
    try:
        return f"{float(raw):.4f}"
    except ValueError:
        return raw


def _millis(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def _aliases_by_version(model_name: str) -> dict[str, list[str]]:
    try:
        registered = mlflow_utils.client().get_registered_model(model_name)
    except MlflowException as exc:
        raise RegistryLookupError(
            f"no registered model {model_name!r} at {mlflow.get_tracking_uri()}; "
            "train one with `python -m training train --features DIR`"
        ) from exc
    by_version: dict[str, list[str]] = {}
    for alias, version in (registered.aliases or {}).items():
        by_version.setdefault(str(version), []).append(alias)
    return by_version


def champion_report(model_name: str) -> str:
    """Multi-line description of the version behind alias `champion`."""
    _aliases_by_version(model_name)
    version = mlflow_utils.alias_version(model_name, CHAMPION)
    if version is None:
        raise RegistryLookupError(f"model {model_name!r} has no {CHAMPION!r} alias yet")
    tags = version.tags or {}
    lines = [
        f"model             {model_name}",
        f"champion version  {version.version}",
        f"run               {version.run_id}",
        f"source            {version.source}",
        f"feature contract  {tags.get(mlflow_utils.TAG_CONTRACT, '')}",
        f"data_sha256       {tags.get(mlflow_utils.TAG_DATA_SHA, '')}",
        f"registered        {_millis(version.creation_timestamp)}",
        f"promoted          {tags.get('promoted_at', '')} by {tags.get('promoted_by', '')}",
        f"gate              {tags.get('gate.reason', '')}",
        f"threshold         {tags.get('decision_threshold', '0.5 (no decision_threshold tag)')}",
    ]
    if tags.get("rollback.reason"):
        lines.append(
            f"rollback          from v{tags.get('rollback.from_version', '')}: "
            f"{tags['rollback.reason']}"
        )
    lines.append("test metrics (threshold metrics at the version's decision threshold)")
    lines += [f"  {name:<15} {_metric(tags, name)}" for name in METRIC_NAMES]
    return "\n".join(lines)


def versions_table(model_name: str) -> str:
    """One row per registered version, newest first."""
    aliases = _aliases_by_version(model_name)
    versions = mlflow_utils.client().search_model_versions(f"name = '{model_name}'")
    rows = []
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        tags = mv.tags or {}
        promote = tags.get("gate.promote")
        decision = {"true": "promote", "false": "keep"}.get(promote or "", "")
        rows.append(
            [
                mv.version,
                ",".join(sorted(aliases.get(str(mv.version), []))),
                *[_metric(tags, m) for m in TABLE_METRICS],
                decision,
                _short(tags.get("gate.reason"), 60),
                _millis(mv.creation_timestamp),
            ]
        )
    headers = ["version", "aliases", *TABLE_METRICS, "gate", "reason", "registered"]
    return format_table(headers, rows)


def train_and_gate(
    features_dir: str,
    *,
    model_name: str,
    experiment: str = "training",
    run_name: str | None = None,
    params: dict[str, Any] | None = None,
    data_sha256: str | None = None,
    gate_config: str | None = None,
) -> dict[str, Any]:
    """Train, evaluate on test, register and gate in one go."""
    from training.evaluate import evaluate_run
    from training.train import train_model

    policy = load_gate_policy(gate_config) if gate_config else load_gate_policy()
    trained = train_model(
        features_dir,
        experiment=experiment,
        run_name=run_name,
        params=params,
        data_sha256=data_sha256,
    )
    test_metrics = evaluate_run(trained["run_id"], features_dir)
    gated = register_and_gate(trained["run_id"], model_name, features_dir, policy)
    return {**trained, "test_metrics": test_metrics, **gated}


def build_parser() -> argparse.ArgumentParser:
    default_model = get_settings().model_name
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    champion = sub.add_parser("champion", help="show the serving version")
    champion.add_argument("--model", default=default_model)

    versions = sub.add_parser("versions", help="list versions, aliases, metrics, gate decisions")
    versions.add_argument("--model", default=default_model)

    back = sub.add_parser("rollback", help="move champion to an existing version")
    back.add_argument("version")
    back.add_argument("--model", default=default_model)
    back.add_argument("--reason", default="manual rollback", help="recorded on the version")
    back.add_argument("--by", help="who (default: the OS user)")
    back.add_argument("--force", action="store_true", help="allow a feature-contract mismatch")

    train = sub.add_parser("train", help="train + evaluate + register + gate")
    train.add_argument("--features", required=True, help="Parquet folder written by featurize")
    train.add_argument("--model", default=default_model)
    train.add_argument("--experiment", default="training")
    train.add_argument("--run-name")
    train.add_argument("--data-sha256")
    train.add_argument("--gate", help="gate policy YAML (default training/config/gate.yaml)")
    train.add_argument("--param", action="append", help="NAME=VALUE override (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    mlflow_utils.configure()
    try:
        if args.command == "champion":
            print(champion_report(args.model))
        elif args.command == "versions":
            print(versions_table(args.model))
        elif args.command == "rollback":
            result = rollback(
                args.model,
                args.version,
                reason=args.reason,
                by=args.by,
                allow_contract_mismatch=args.force,
            )
            from monitoring.pipeline_metrics import push_champion

            push_champion(result["model"], result["champion_version"])
            print(
                f"{result['model']}: champion v{result['previous_version'] or '-'} -> "
                f"v{result['champion_version']} by {result['by']} ({result['reason']})"
            )
        elif args.command == "train":
            result = train_and_gate(
                args.features,
                model_name=args.model,
                experiment=args.experiment,
                run_name=args.run_name,
                params=parse_param_overrides(args.param),
                data_sha256=args.data_sha256,
                gate_config=args.gate,
            )
            verdict = "promoted to champion" if result["promoted"] else "kept as challenger"
            print(f"run {result['run_id']} -> {args.model} v{result['version']}: {verdict}")
            print(f"gate: {result['decision']['reason']}")
            print(json.dumps(result["test_metrics"], indent=2))
    except (
        RegistryLookupError,
        PromotionError,
        FeatureDataError,
        ModelParamsError,
        GatePolicyError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
