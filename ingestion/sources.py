"""Source specifications: how one raw file maps onto the canonical raw columns.

A source is named either by a key of contracts/sources.yaml (`{"source":
"imdb"}`) or inline with its own mapping (`{"name": ..., "text_column": ...,
"label_column": ..., "label_map": {...}}`); inline keys override the YAML
ones. The resolved mapping is copied into the run manifest, so validation
reads exactly what ingestion recorded even if sources.yaml changes later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from contracts.reviews import load_sources
from ingestion.errors import SourceConfigError

POLICY_PATH = Path(__file__).with_name("quarantine.yaml")
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MAPPING_KEYS = (
    "text_column",
    "label_column",
    "label_map",
    "expected_unmapped",
    "expectation_suite",
    "delimiter",
    "format",
)


@dataclass(frozen=True)
class SourceSpec:
    """Everything needed to read one raw file and map it to (text, label)."""

    name: str
    text_column: str
    label_column: str
    label_map: dict[str, int]
    expected_unmapped: tuple[str, ...] = ()
    source: str | None = None
    expectation_suite: str | None = None
    delimiter: str = ","
    format: str | None = None

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
            merged.update({k: v for k, v in known[key].items() if k in _MAPPING_KEYS})
        merged.update({k: entry[k] for k in _MAPPING_KEYS if entry.get(k) is not None})
        name = entry.get("name") or key
        missing = [k for k in ("text_column", "label_column", "label_map") if not merged.get(k)]
        if not name:
            missing.insert(0, "name")
        if missing:
            raise SourceConfigError(
                f"source entry {entry!r} lacks {missing}: give a known 'source' key of "
                "contracts/sources.yaml or all of name, text_column, label_column, label_map"
            )
        if not _NAME_PATTERN.match(str(name)):
            raise SourceConfigError(
                f"source name {name!r} is not usable as a folder name: use letters, digits, "
                "'_', '-' or '.', starting with a letter or digit"
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
            text_column=str(merged["text_column"]),
            label_column=str(merged["label_column"]),
            label_map={k: int(v) for k, v in label_map.items()},
            expected_unmapped=tuple(str(v) for v in merged.get("expected_unmapped") or ()),
            source=key,
            expectation_suite=merged.get("expectation_suite"),
            delimiter=str(merged.get("delimiter") or ","),
            format=merged.get("format"),
        )

    def to_manifest(self) -> dict[str, Any]:
        """The mapping as plain JSON-able data for the manifest."""
        return {
            "source": self.source,
            "text_column": self.text_column,
            "label_column": self.label_column,
            "label_map": dict(self.label_map),
            "expected_unmapped": list(self.expected_unmapped),
            "expectation_suite": self.expectation_suite,
            "delimiter": self.delimiter,
            "format": self.format,
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
