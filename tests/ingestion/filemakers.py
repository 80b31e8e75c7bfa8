"""Helpers that write the raw files the ingestion tests feed in."""

from __future__ import annotations

import csv
import io
from typing import Any

SYNTH_HEADER = ("text", "label")


def csv_bytes(
    rows: list[tuple[Any, ...]], header: tuple[str, ...] = SYNTH_HEADER, sep: str = ","
) -> bytes:
    """A CSV written the way most exporters write it: minimal quoting, LF endings."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=sep, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def padding(n: int, start: int = 0) -> list[tuple[str, str]]:
    """Distinct, clean rows that every check accepts (labels alternate 0/1)."""
    return [(f"Review number {i} of the padding set.", str(i % 2)) for i in range(start, start + n)]
