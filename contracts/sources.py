"""Raw sources (contracts/sources.yaml) of every use case, and label mapping.

A source maps a file's own column names onto a use case's canonical raw columns and its label
values onto 0/1. Keys of an entry (see the comments in sources.yaml):
`use_case` (default `reviews`), `columns` ({canonical: file column}, default the canonical
names), `text_column` (shorthand for a text use case's one raw column), `label_column`,
`label_map`, `expected_unmapped`, `expectation_suite`, `delimiter`, `file`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

SOURCES_FILE = Path(__file__).with_name("sources.yaml")
DEFAULT_SOURCE_USE_CASE = "reviews"


@lru_cache(maxsize=1)
def load_sources() -> dict[str, dict[str, Any]]:
    """Every known raw source from sources.yaml, by name."""
    sources: dict[str, dict[str, Any]] = yaml.safe_load(SOURCES_FILE.read_text())["sources"]
    return sources


def source_use_case(entry: dict[str, Any]) -> str:
    """The use case a sources.yaml entry feeds."""
    return str(entry.get("use_case", DEFAULT_SOURCE_USE_CASE))


def sources_for(use_case: str) -> dict[str, dict[str, Any]]:
    """The sources feeding `use_case`."""
    return {n: e for n, e in load_sources().items() if source_use_case(e) == use_case}


def source_columns(entry: dict[str, Any], raw_columns: tuple[str, ...]) -> dict[str, str]:
    """{canonical raw column: the file's column} for a source entry."""
    if "columns" in entry:
        mapping = {str(k): str(v) for k, v in entry["columns"].items()}
    elif "text_column" in entry and len(raw_columns) == 1:
        mapping = {raw_columns[0]: str(entry["text_column"])}
    else:
        mapping = {}
    return {name: mapping.get(name, name) for name in raw_columns}


def map_label(value: Any, label_map: dict[str, int]) -> int | None:
    """Map a raw label value to 0/1 with the source's map, None if unmapped."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    key = str(value).strip()
    if key in label_map:
        return int(label_map[key])
    lowered = key.lower()
    return int(label_map[lowered]) if lowered in label_map else None
