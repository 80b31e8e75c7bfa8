"""Source specifications: how one raw file maps onto the canonical raw columns.

A source is named either by a key of contracts/sources.yaml (`{"source":
"imdb"}`) or inline with its own mapping (`{"name": ..., "text_column": ...,
"label_column": ..., "label_map": {...}}`, or `"columns": {canonical: file
column}` for a use case with several raw columns); inline keys override the
YAML ones. The source feeds one use case of the registry (`use_case`, default
reviews), whose contract names the canonical raw columns. The resolved mapping
is copied into the run manifest, so validation reads exactly what ingestion
recorded even if sources.yaml changes later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from contracts.sources import DEFAULT_SOURCE_USE_CASE, load_sources, source_columns
from core.usecases import UseCaseError, get_use_case
from ingestion.errors import SourceConfigError

POLICY_PATH = Path(__file__).with_name("quarantine.yaml")
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAPPING_KEYS = (
    "use_case",
    "columns",
    "text_column",
    "label_column",
    "label_map",
    "expected_unmapped",
    "expectation_suite",
    "delimiter",
    "format",
    "segment",
)


@dataclass(frozen=True)
class SourceSpec:
    """Everything needed to read one raw file and map it to the canonical raw columns + label.

    `columns` is {canonical raw column: file column}; for a one-column (text) use case
    `text_column` is that one file column, else None.
    """

    name: str
    text_column: str | None
    label_column: str
    label_map: dict[str, int]
    expected_unmapped: tuple[str, ...] = ()
    source: str | None = None
    expectation_suite: str | None = None
    delimiter: str = ","
    format: str | None = None
    use_case: str = DEFAULT_SOURCE_USE_CASE
    columns: dict[str, str] = field(default_factory=dict)
    segment: str | None = None

    @property
    def segment_name(self) -> str:
        """The segment its accepted rows carry (column `source`, the gate's per-source checks):
        an explicit `segment`, else the contracts/sources.yaml key, else the entry's name."""
        return self.segment or self.source or self.name

    @property
    def file_columns(self) -> list[str]:
        """The file's columns holding the canonical raw columns, in the contract's order."""
        return list(self.columns.values())

    @property
    def required_columns(self) -> list[str]:
        """Every file column the mapping reads: the raw columns, then the label."""
        return [*self.file_columns, self.label_column]

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> SourceSpec:
        """Resolve a source-list or manifest entry against contracts/sources.yaml."""
        known = load_sources()
        key = entry.get("source")
        merged: dict[str, Any] = {}
        if key is not None:
            if key not in known:
                raise SourceConfigError(
                    f"unknown source {key!r}: contracts/sources.yaml defines {sorted(known)}; "
                    "add it there or give text_column, label_column and label_map inline"
                )
            merged.update({k: v for k, v in known[key].items() if k in MAPPING_KEYS})
        merged.update({k: entry[k] for k in MAPPING_KEYS if entry.get(k) is not None})
        name = entry.get("name") or key
        use_case = str(merged.get("use_case") or DEFAULT_SOURCE_USE_CASE)
        try:
            raw_columns = tuple(get_use_case(use_case).contract.RAW_COLUMNS)
        except UseCaseError as exc:
            raise SourceConfigError(f"source {name!r}: {exc}") from exc
        # A one-column (text) use case needs its text column named; several raw columns
        # default to the canonical names where `columns` does not map them.
        one_column = len(raw_columns) == 1
        needed = ["label_column", "label_map"]
        if one_column and not merged.get("columns"):
            needed.insert(0, "text_column")
        missing = [k for k in needed if not merged.get(k)]
        if not name:
            missing.insert(0, "name")
        if missing:
            raise SourceConfigError(
                f"source entry {entry!r} lacks {missing}: give a known 'source' key of "
                "contracts/sources.yaml or all of name, "
                + ("text_column" if one_column else "columns")
                + ", label_column, label_map"
            )
        if merged.get("columns") is not None:
            unknown = sorted(set(dict(merged["columns"])) - set(raw_columns))
            if unknown:
                raise SourceConfigError(
                    f"source {name!r} maps {unknown}, which are not raw columns of use case "
                    f"{use_case!r}: {list(raw_columns)}"
                )
        columns = source_columns(merged, raw_columns)
        if not _NAME_PATTERN.match(str(name)):
            raise SourceConfigError(
                f"source name {name!r} is not usable as a folder name: use letters, digits, "
                "'_', '-' or '.', starting with a letter or digit"
            )
        segment = merged.get("segment")
        if segment is not None and not _NAME_PATTERN.match(str(segment)):
            raise SourceConfigError(
                f"segment {segment!r} of source {name!r}: use letters, digits, '_', '-' or '.', "
                "starting with a letter or digit"
            )
        label_map = {str(k): v for k, v in dict(merged["label_map"]).items()}
        bad = {k: v for k, v in label_map.items() if v not in (0, 1) or isinstance(v, bool)}
        if bad:
            raise SourceConfigError(
                f"label_map of source {name!r} maps {bad} to values other than 0 or 1"
            )
        overlap = set(label_map) & {str(v) for v in merged.get("expected_unmapped") or ()}
        if overlap:
            raise SourceConfigError(
                f"source {name!r} lists {sorted(overlap)} both in label_map and "
                "expected_unmapped; a value is either mapped or deliberately left out"
            )
        return cls(
            name=str(name),
            text_column=columns[raw_columns[0]] if one_column else None,
            label_column=str(merged["label_column"]),
            label_map={k: int(v) for k, v in label_map.items()},
            expected_unmapped=tuple(str(v) for v in merged.get("expected_unmapped") or ()),
            source=key,
            expectation_suite=merged.get("expectation_suite"),
            delimiter=str(merged.get("delimiter") or ","),
            format=merged.get("format"),
            use_case=use_case,
            columns=columns,
            segment=None if segment is None else str(segment),
        )

    def to_manifest(self) -> dict[str, Any]:
        """The mapping as plain JSON-able data for the manifest."""
        return {
            "source": self.source,
            "use_case": self.use_case,
            "columns": dict(self.columns),
            "text_column": self.text_column,
            "label_column": self.label_column,
            "label_map": dict(self.label_map),
            "expected_unmapped": list(self.expected_unmapped),
            "expectation_suite": self.expectation_suite,
            "delimiter": self.delimiter,
            "format": self.format,
            "segment": self.segment,
        }

    def default_file(self) -> str | None:
        """The file name sources.yaml gives for this source, if any."""
        if self.source is None:
            return None
        value = load_sources()[self.source].get("file")
        return str(value) if value else None


@dataclass(frozen=True)
class QuarantinePolicy:
    """Reason codes (in check order) and what a missing label looks like: ingestion/quarantine.yaml."""

    missing_label_values: frozenset[str]
    counts_toward_share: dict[str, bool] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)

    @property
    def reasons(self) -> list[str]:
        return list(self.counts_toward_share)

    @property
    def excluded_reasons(self) -> list[str]:
        return [r for r, counted in self.counts_toward_share.items() if not counted]


@lru_cache(maxsize=1)
def load_policy(path: Path = POLICY_PATH) -> QuarantinePolicy:
    """Read the quarantine policy once per process."""
    data = yaml.safe_load(path.read_text())
    reasons = data["reasons"]
    return QuarantinePolicy(
        missing_label_values=frozenset(str(v) for v in data["missing_label_values"]),
        counts_toward_share={k: bool(v["counts_toward_share"]) for k, v in reasons.items()},
        descriptions={k: " ".join(str(v["description"]).split()) for k, v in reasons.items()},
    )
