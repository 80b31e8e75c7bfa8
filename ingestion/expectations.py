"""The Great Expectations side of validate_raw: suites from files, one checkpoint, Data Docs.

Suites and the checkpoint configuration live in the repository under
`great_expectations/` as human-readable JSON/YAML. Each run builds an
in-memory (ephemeral) GE context from them, so nothing a run produces is
written into the repository; the only files written are the Data Docs under
`<run_dir>/data_docs/`. Great Expectations is imported inside functions:
importing it takes several seconds and most callers of this package
(snapshotting, the CLI's --help, bad-file checks) never need it.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ingestion.errors import SourceConfigError
from ingestion.sources import SourceSpec

logger = logging.getLogger(__name__)

GE_DIR = Path(__file__).resolve().parents[1] / "great_expectations"
SUITES_DIR = GE_DIR / "expectations"
CHECKPOINT_CONFIG = GE_DIR / "checkpoints" / "validate_raw.yaml"
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
COLUMN_KWARGS = ("column", "column_A", "column_B")
COLUMN_LIST_KWARGS = ("column_list",)


@dataclass
class CheckpointOutcome:
    """What the checkpoint found, in plain data (JSON-able for the report and XCom)."""

    success: bool
    failures: list[dict[str, Any]] = field(default_factory=list)
    blocking: list[dict[str, Any]] = field(default_factory=list)
    data_docs_path: str = ""
    evaluated: int = 0


@lru_cache(maxsize=1)
def load_checkpoint_config(path: Path = CHECKPOINT_CONFIG) -> dict[str, Any]:
    """great_expectations/checkpoints/validate_raw.yaml with suite parameters resolved."""
    config = yaml.safe_load(path.read_text())
    if config.get("fail_on_severity") not in SEVERITY_RANK:
        raise SourceConfigError(
            f"{path}: fail_on_severity is {config.get('fail_on_severity')!r}, "
            f"expected one of {sorted(SEVERITY_RANK)}"
        )
    resolved = {}
    for key, ref in (config.get("suite_parameters") or {}).items():
        module_name, _, attr = str(ref).rpartition(".")
        if not module_name.startswith("contracts"):
            raise SourceConfigError(
                f"{path}: suite parameter {key} = {ref!r} must name a value in contracts/"
            )
        resolved[key] = getattr(importlib.import_module(module_name), attr)
    config["suite_parameters"] = resolved
    return config


def suite_path(name: str) -> Path:
    return SUITES_DIR / f"{name}.json"


def load_suite(name: str) -> dict[str, Any]:
    """A suite file as data (GE's own JSON layout: name, expectations[type, kwargs, ...])."""
    path = suite_path(name)
    if not path.is_file():
        known = sorted(p.stem for p in SUITES_DIR.glob("*.json"))
        raise SourceConfigError(
            f"expectation suite {name!r} not found at {path}; known suites: {known}"
        )
    suite = json.loads(path.read_text())
    if suite.get("name") != name:
        raise SourceConfigError(f"{path} holds suite {suite.get('name')!r}, expected {name!r}")
    return suite


def derived_suite(spec: SourceSpec) -> dict[str, Any]:
    """A minimal suite for an inline source that names no suite file: structure and domain."""
    text, label = spec.text_column, spec.label_column
    domain = sorted(set(spec.label_map) | set(spec.expected_unmapped))
    return {
        "name": f"raw_{spec.name}_derived",
        "notes": f"Derived from the inline mapping of source {spec.name!r} (no suite file).",
        "expectations": [
            {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
            {"type": "expect_column_to_exist", "kwargs": {"column": text}},
            {"type": "expect_column_to_exist", "kwargs": {"column": label}},
            {
                "type": "expect_column_value_lengths_to_be_between",
                "kwargs": {
                    "column": text,
                    "min_value": 1,
                    "max_value": {"$PARAMETER": "max_text_chars"},
                    "mostly": 0.99,
                },
                "severity": "warning",
            },
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": label, "mostly": 0.99},
                "severity": "warning",
            },
            {
                "type": "expect_column_values_to_be_in_set",
                "kwargs": {"column": label, "value_set": domain},
                "severity": "warning",
            },
        ],
    }


def suite_for(spec: SourceSpec) -> dict[str, Any]:
    return load_suite(spec.expectation_suite) if spec.expectation_suite else derived_suite(spec)


def suite_columns(suite: dict[str, Any]) -> set[str]:
    """Every column an expectation of the suite names."""
    columns: set[str] = set()
    for expectation in suite["expectations"]:
        kwargs = expectation.get("kwargs", {})
        columns.update(str(kwargs[k]) for k in COLUMN_KWARGS if k in kwargs)
        for key in COLUMN_LIST_KWARGS:
            columns.update(str(c) for c in kwargs.get(key, []))
    return columns


def _context(docs_dir: Path, site_name: str) -> Any:
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    ge_logger = logging.getLogger("great_expectations")
    if ge_logger.level == logging.NOTSET:
        # GE logs its own start-up bookkeeping at INFO; keep the task log about the data.
        ge_logger.setLevel(logging.WARNING)
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    import great_expectations as gx

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites={
            site_name: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
            }
        },
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _build_suite(suite: dict[str, Any]) -> Any:
    import great_expectations as gx

    built = gx.ExpectationSuite(
        name=suite["name"],
        expectations=[dict(e) for e in suite["expectations"]],
        meta=suite.get("meta"),
        notes=suite.get("notes"),
    )
    if len(built.expectations) != len(suite["expectations"]):
        raise SourceConfigError(
            f"suite {suite['name']!r}: only {len(built.expectations)} of "
            f"{len(suite['expectations'])} expectations could be built (GE logged why above); "
            f"fix {suite_path(suite['name'])}"
        )
    return built


def _plain(value: Any) -> Any:
    """JSON-able copy of a GE result value (numpy scalars become Python numbers)."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def _summarise(result: dict[str, Any]) -> dict[str, Any]:
    keep = ("observed_value", "element_count", "unexpected_count", "unexpected_percent")
    return {k: _plain(result[k]) for k in keep if result.get(k) is not None}


def run_checkpoint(
    sources: list[tuple[SourceSpec, pd.DataFrame]],
    docs_dir: Path,
    run_name: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> CheckpointOutcome:
    """Validate each (spec, raw frame) against its suite; build Data Docs under docs_dir.

    `run_name` labels the results in Data Docs (the run folder's name, so a
    page can be traced back to its pipeline run). `parameters` override the
    checkpoint's suite parameters (the run's use case sets its own limits).
    """
    from great_expectations.core.run_identifier import RunIdentifier

    import great_expectations as gx

    config = load_checkpoint_config()
    site = str(config.get("data_docs_site", "run_data_docs"))
    context = _context(docs_dir, site)
    datasource = context.data_sources.add_pandas("raw_sources")
    threshold = SEVERITY_RANK[config["fail_on_severity"]]
    outcome = CheckpointOutcome(success=True)
    added: dict[str, Any] = {}
    for spec, frame in sources:
        suite = suite_for(spec)
        if suite["name"] not in added:
            added[suite["name"]] = context.suites.add(_build_suite(suite))
        batch = datasource.add_dataframe_asset(spec.name).add_batch_definition_whole_dataframe(
            "whole_file"
        )
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"raw_{spec.name}", data=batch, suite=added[suite["name"]])
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                **{**config["checkpoint"], "name": f"{config['checkpoint']['name']}_{spec.name}"},
                validation_definitions=[validation],
            )
        )
        result = checkpoint.run(
            batch_parameters={"dataframe": frame},
            expectation_parameters={**config["suite_parameters"], **(parameters or {})},
            run_id=RunIdentifier(run_name=run_name) if run_name else None,
        )
        for run_result in result.run_results.values():
            for item in run_result.results:
                outcome.evaluated += 1
                if item.success:
                    continue
                exp = item.expectation_config
                severity = getattr(exp.severity, "value", str(exp.severity))
                failure = {
                    "source": spec.name,
                    "suite": suite["name"],
                    "expectation": exp.type,
                    "column": exp.kwargs.get("column"),
                    "severity": severity,
                    "observed": _summarise(item.result or {}),
                }
                if item.exception_info and item.exception_info.get("raised_exception"):
                    failure["exception"] = item.exception_info.get("exception_message")
                outcome.failures.append(failure)
                if SEVERITY_RANK.get(severity, 2) >= threshold:
                    outcome.blocking.append(failure)
    outcome.success = not outcome.failures
    outcome.data_docs_path = str(docs_dir / "index.html")
    return outcome
