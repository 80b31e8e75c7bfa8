"""Check a DAG run's Params before any work starts, and say plainly what is wrong.

A run triggered from the UI form, the REST API or `drift_check` reaches the
first task of its DAG with whatever was typed. A typo found there costs one
log line; found later it costs a Spark or Optuna stack trace minutes into the
run. So the first task of each DAG calls `check_training_params` or
`check_drift_params`, which return the run's Params normalised (empty →
default, "infer" → the inferred source) or raise `ParamError` naming the Param
and the problem. Later tasks call the same functions with `check_files=False`
to read the same normalised values.

Both DAGs take a `use_case` Param (a name of the use-case registry,
core/usecases.yaml); sources, model families, the registered model name and
the drift thresholds are then those of that use case.

Only the standard library, PyYAML and the registry (core.usecases, which
imports no use-case module until asked) are imported: the DAG files use
`use_case_names`, `source_names` and `family_names` at parse time for the
form's choices.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from core.usecases import (
    DEFAULT_USE_CASE,
    UseCase,
    UseCaseError,
    get_use_case,
    load_registry,
    use_case_names,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCES_YAML = REPO_ROOT / "contracts" / "sources.yaml"

INFER = "infer"
"""The `source` choice that picks the sources.yaml entry from the file name."""

CANONICAL_SOURCE = "synthetic"
"""The reviews layout of a file no known dataset name matches: columns `text` and `label`.

Every use case names its own in the registry (`default_source`)."""

SOURCE_ENTRY_KEYS = frozenset(
    {
        "path",
        "source",
        "name",
        "text_column",
        "label_column",
        "label_map",
        "expected_unmapped",
        "expectation_suite",
        "delimiter",
        "format",
        "columns",
        "segment",
    }
)

LIMITS: dict[str, tuple[float, float]] = {
    "synthetic_rows": (100, 1_000_000),
    "n_trials": (1, 500),
    "family_timeout_s": (10, 86_400),
    "max_quarantine_share": (0.0, 1.0),
}
"""Bounds of the numeric training Params; the DAG's form uses the same numbers."""

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class ParamError(ValueError):
    """A Param of a DAG run has a value the run cannot use.

    The message names the Param, the value and what would work, in one line,
    so it reads well as the last line of a failed task's log.
    """

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"Param {name!r}: {problem}")


@lru_cache(maxsize=1)
def _sources() -> dict[str, dict[str, Any]]:
    return dict(yaml.safe_load(SOURCES_YAML.read_text())["sources"])


def _source_use_case(spec: Mapping[str, Any]) -> str:
    return str(spec.get("use_case", DEFAULT_USE_CASE))


def source_names(use_case: str | None = None) -> list[str]:
    """The sources contracts/sources.yaml defines (feeding `use_case` when given), in its order."""
    return [k for k, v in _sources().items() if use_case is None or _source_use_case(v) == use_case]


def use_case_choices() -> dict[str, str]:
    """{registered use case: what the form shows for it} (the default first)."""
    registry = load_registry()
    return {
        name: f"{name}: {registry[name].description}" if registry[name].description else name
        for name in use_case_names()
    }


@lru_cache(maxsize=16)
def _families_in(path: Path) -> tuple[str, ...]:
    return tuple(yaml.safe_load(path.read_text())["families"])


def family_names(use_case: str | None = None) -> list[str]:
    """The model families of `use_case`'s (default: reviews') search_spaces.yaml, in its order."""
    return list(_families_in(get_use_case(use_case).config_path("search_spaces")))


def all_family_names() -> list[str]:
    """Every registered use case's model families (the form's examples)."""
    families: dict[str, None] = {}
    for name in use_case_names():
        families.update(dict.fromkeys(family_names(name)))
    return list(families)


def default_model_name(use_case: str | None = None) -> str:
    """The registered model name of `use_case` (its registry entry, env overrides honoured)."""
    return get_use_case(use_case).model_name


def default_source(use_case: str | None = None) -> str:
    """The source a file of no known dataset name is read as: the use case's default_source."""
    uc = get_use_case(use_case)
    if uc.default_source:
        return uc.default_source
    own = source_names(uc.name)
    return own[0] if own else CANONICAL_SOURCE


def infer_source(path: str | os.PathLike[str] | None, use_case: str | None = None) -> str:
    """The use case's sources.yaml entry whose `file` is this file's name, else its default."""
    if path:
        name = Path(path).name
        for key in source_names(get_use_case(use_case).name):
            if _sources()[key].get("file") == name:
                return key
    return default_source(use_case)


def _shown(path: Path) -> str:
    """A config path as a message shows it: relative to the repository when inside it."""
    return str(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _number(params: Mapping[str, Any], name: str, default: float, *, integer: bool) -> Any:
    value = params.get(name)
    if value is None:
        return default
    low, high = LIMITS[name]
    kind = "a whole number" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ParamError(name, f"{value!r} is not {kind} between {low:g} and {high:g}")
    try:
        number = float(value)
    except ValueError:
        raise ParamError(name, f"{value!r} is not {kind} between {low:g} and {high:g}") from None
    if integer and not number.is_integer():
        raise ParamError(name, f"{value!r} is not {kind} between {low:g} and {high:g}")
    if not low <= number <= high:
        raise ParamError(name, f"{value!r} is outside {low:g} .. {high:g}")
    return int(number) if integer else number


def _existing_file(name: str, value: Any, check_files: bool) -> str:
    if not isinstance(value, str):
        raise ParamError(name, f"{value!r} is not a file path")
    path = Path(value.strip()).expanduser()
    if not path.is_absolute():
        raise ParamError(
            name,
            f"{value!r} is not an absolute path (the Airflow workers' working folder is "
            "not yours: give the full path)",
        )
    if check_files and not path.is_file():
        where = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ParamError(
            name,
            f"{str(path)!r} {where} (give a CSV, CSV.gz, Parquet or JSONL file "
            "the Airflow workers can read, as an absolute path)",
        )
    return str(path)


def _source(name: str, value: Any, path: str | None, use_case: str) -> tuple[str, bool]:
    """(source key, inferred?) for a `source`-like Param."""
    if _blank(value) or value == INFER:
        return infer_source(path, use_case), True
    if value not in _sources():
        raise ParamError(
            name,
            f"unknown source {value!r}; choose {INFER!r} or one of {source_names(use_case)} "
            "(contracts/sources.yaml)",
        )
    feeds = _source_use_case(_sources()[str(value)])
    if feeds != use_case:
        raise ParamError(
            name,
            f"source {value!r} feeds use case {feeds!r}, not {use_case!r}; choose {INFER!r} "
            f"or one of {source_names(use_case)}",
        )
    return str(value), False


def _use_case(value: Any) -> str:
    if _blank(value):
        return DEFAULT_USE_CASE
    try:
        uc: UseCase = get_use_case(str(value).strip())
    except UseCaseError:
        raise ParamError(
            "use_case", f"unknown use case {value!r}; registered: {use_case_names()}"
        ) from None
    return uc.name


def _source_entries(
    name: str, value: Any, check_files: bool, use_case: str = DEFAULT_USE_CASE
) -> list[dict[str, Any]]:
    """Each item: {"path": ..., "source": <key or "infer">} or an inline column mapping."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ParamError(name, f"{value!r} is not a JSON list of objects like {_EXAMPLE}")
    entries: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        where = f"{name}[{index}]"
        if not isinstance(item, dict):
            raise ParamError(where, f"{item!r} is not an object like {_EXAMPLE}")
        unknown = sorted(set(item) - SOURCE_ENTRY_KEYS)
        if unknown:
            raise ParamError(where, f"unknown keys {unknown}; allowed: {sorted(SOURCE_ENTRY_KEYS)}")
        if _blank(item.get("path")):
            raise ParamError(where, f"has no 'path'; each item looks like {_EXAMPLE}")
        entry = dict(item)
        entry["path"] = _existing_file(where, item["path"], check_files)
        mapping = item.get("text_column") or item.get("columns")
        inline = bool(mapping) and all(item.get(k) for k in ("label_column", "label_map"))
        if not (inline and _blank(item.get("source"))):
            entry["source"], _ = _source(
                f"{where}.source", item.get("source"), entry["path"], use_case
            )
        entries.append(entry)
    return entries


_EXAMPLE = '{"path": "/data/amazon.csv.gz", "source": "amazon"}'


def _families(value: Any, use_case: str = DEFAULT_USE_CASE) -> list[str]:
    known = family_names(use_case)
    if value is None or value == []:
        return known
    if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
        raise ParamError("families", f"{value!r} is not a list of family names from {known}")
    unknown = [f for f in value if f not in known]
    if unknown:
        raise ParamError(
            "families",
            f"unknown model families {unknown}; use case {use_case!r} knows {known} "
            f"({_shown(get_use_case(use_case).config_path('search_spaces'))})",
        )
    return list(dict.fromkeys(value))


def _model_name(value: Any, use_case: str = DEFAULT_USE_CASE) -> str:
    if _blank(value):
        return default_model_name(use_case)
    if not isinstance(value, str) or not _MODEL_NAME.match(value.strip()):
        raise ParamError(
            "model_name",
            f"{value!r} is not a usable registered-model name "
            "(letters, digits, '_', '-', '.', up to 128 characters)",
        )
    return value.strip()


def _object(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ParamError(name, f"{value!r} is not a JSON object")
    return dict(value)


def check_training_params(params: Mapping[str, Any], *, check_files: bool = True) -> dict[str, Any]:
    """The `training_pipeline` Params, normalised; ParamError on the first bad one.

    With `check_files`, every named data file must exist (the first task runs
    on a worker that can read them; later tasks skip the disk check).
    """
    out = dict(params)
    use_case = out["use_case"] = _use_case(params.get("use_case"))
    data_path = None if _blank(params.get("data_path")) else params["data_path"]
    out["data_path"] = _existing_file("data_path", data_path, check_files) if data_path else None
    out["source"], out["source_inferred"] = _source(
        "source", params.get("source"), data_path, use_case
    )
    out["extra_sources"] = _source_entries(
        "extra_sources", params.get("extra_sources"), check_files, use_case
    )
    out["synthetic_rows"] = _number(params, "synthetic_rows", 3000, integer=True)
    out["families"] = _families(params.get("families"), use_case)
    out["n_trials"] = _number(params, "n_trials", 8, integer=True)
    out["family_timeout_s"] = _number(params, "family_timeout_s", 300, integer=True)
    out["max_quarantine_share"] = _number(params, "max_quarantine_share", 0.05, integer=False)
    out["model_name"] = _model_name(params.get("model_name"), use_case)
    reason = params.get("reason")
    out["reason"] = "manual" if _blank(reason) else str(reason).strip()
    out["trigger"] = _object("trigger", params.get("trigger"))
    return out


def parse_instant(name: str, value: Any) -> datetime | None:
    """An ISO-8601 date or date-time Param as an aware datetime (no offset means UTC)."""
    if _blank(value):
        return None
    if not isinstance(value, str):
        raise ParamError(name, f"{value!r} is not an ISO-8601 date-time string")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ParamError(
            name,
            f"{value!r} is not an ISO-8601 date-time, e.g. 2026-11-30T00:00:00+00:00 "
            "or 2026-11-30 (no offset means UTC)",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def check_drift_params(params: Mapping[str, Any], *, check_files: bool = True) -> dict[str, Any]:
    """The `drift_check` Params, normalised; ParamError on the first bad one."""
    out = dict(params)
    use_case = out["use_case"] = _use_case(params.get("use_case"))
    out["model_name"] = _model_name(params.get("model_name"), use_case)
    start = parse_instant("window_start", params.get("window_start"))
    end = parse_instant("window_end", params.get("window_end"))
    if start is not None and end is not None and end <= start:
        raise ParamError(
            "window_end", f"{end.isoformat()} is not after window_start {start.isoformat()}"
        )
    out["window_start"] = start.isoformat() if start else None
    out["window_end"] = end.isoformat() if end else None
    out["thresholds"] = _thresholds(params.get("thresholds"), use_case)
    retrain = params.get("retrain")
    if retrain is not None and not isinstance(retrain, bool):
        raise ParamError("retrain", f"{retrain!r} is not true or false")
    out["retrain"] = True if retrain is None else retrain
    raw_path = params.get("retrain_data_path")
    data_path = None if _blank(raw_path) else raw_path
    out["retrain_data_path"] = (
        _existing_file("retrain_data_path", data_path, check_files) if data_path else None
    )
    out["retrain_source"], _ = _source(
        "retrain_source", params.get("retrain_source"), data_path, use_case
    )
    out["retrain_extra_sources"] = _source_entries(
        "retrain_extra_sources", params.get("retrain_extra_sources"), check_files, use_case
    )
    out["retrain_conf"] = _object("retrain_conf", params.get("retrain_conf"))
    if out["retrain_conf"]:
        # The retrain conf becomes training_pipeline's Params: catch its typos now.
        conf = {k: v for k, v in out["retrain_conf"].items() if k != "trigger"}
        if not _blank(conf.get("use_case")) and _use_case(conf["use_case"]) != use_case:
            raise ParamError(
                "retrain_conf",
                f"use_case {conf['use_case']!r} differs from this run's use case {use_case!r}",
            )
        check_training_params({**conf, "use_case": use_case}, check_files=False)
    return out


def _thresholds(value: Any, use_case: str = DEFAULT_USE_CASE) -> dict[str, Any]:
    thresholds = _object("thresholds", value)
    if not thresholds:
        return thresholds
    path = get_use_case(use_case).config_path("drift")
    known = set(yaml.safe_load(path.read_text()))
    unknown = sorted(set(thresholds) - known)
    if unknown:
        raise ParamError(
            "thresholds",
            f"unknown keys {unknown}; any key of {_shown(path)} (use case {use_case!r}): {sorted(known)}",
        )
    return thresholds


def describe_sources(params: Mapping[str, Any]) -> str:
    """One phrase for a log line: which files with which column mapping."""
    parts: list[str] = []
    if params.get("data_path"):
        how = "inferred from the file name" if params.get("source_inferred") else "as given"
        parts.append(f"{params['data_path']} (source {params['source']}, {how})")
    for entry in params.get("extra_sources") or []:
        parts.append(f"{entry['path']} (source {entry.get('source') or 'inline mapping'})")
    if not parts:
        what = params.get("use_case") or DEFAULT_USE_CASE
        return f"{params.get('synthetic_rows')} generated synthetic rows of use case {what!r}"
    return " + ".join(parts)


def params_markdown(params: Mapping[str, Any]) -> str:
    """A Markdown table of a DAG's Params for its doc_md: the same words as the form."""
    rows = [
        "#### Params",
        "",
        "| Param | Field | Default | What it does |",
        "| --- | --- | --- | --- |",
    ]
    for name, param in params.items():
        schema = getattr(param, "schema", {})
        default = getattr(param, "value", None)
        shown = "empty" if default is None else f"`{default}`"
        section = f" ({schema['section']})" if schema.get("section") else ""
        text = str(getattr(param, "description", "") or "").replace("|", "\\|")
        rows.append(f"| `{name}` | {schema.get('title', name)}{section} | {shown} | {text} |")
    return "\n".join(rows) + "\n"
