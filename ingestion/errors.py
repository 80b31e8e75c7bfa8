"""Exceptions of the ingest and validate_raw steps.

Each one says which file or source is at fault, what was found and what was
expected, so the Airflow task log alone tells an operator what to fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class IngestionError(Exception):
    """Base class: anything that stops a raw snapshot from becoming training input."""


class SourceConfigError(IngestionError, ValueError):
    """A source entry is incomplete or contradicts contracts/sources.yaml."""


class SnapshotConflict(IngestionError):
    """A snapshot with the same name but different bytes already exists in the run folder."""


class BadSourceFile(IngestionError):
    """A raw file cannot be read as the source it claims to be.

    Carries the file, the problem and what was expected as attributes so
    callers (and tests) can inspect them without parsing the message.
    """

    def __init__(self, path: str | Path, problem: str, expected: str) -> None:
        self.path = str(path)
        self.problem = problem
        self.expected = expected
        super().__init__(f"{self.path}: {problem}. Expected: {expected}.")


class SourceFileNotFound(BadSourceFile):
    """The file named in the source list does not exist."""


class UnsupportedFormat(BadSourceFile):
    """The file suffix is none of the formats the reader knows."""


class EmptySourceFile(BadSourceFile):
    """The file has no bytes, no header line or no data rows."""


class CorruptSourceFile(BadSourceFile):
    """The bytes are damaged: truncated compression, broken Parquet footer, invalid JSON."""


class MalformedSourceFile(CorruptSourceFile):
    """The file decompresses but its records do not parse (unbalanced quotes, ragged rows)."""


class WrongDelimiter(BadSourceFile):
    """The header splits into the expected columns only with another delimiter."""


class MissingColumns(BadSourceFile):
    """Schema drift: a column the source mapping needs is absent (often renamed)."""

    def __init__(
        self, path: str | Path, problem: str, expected: str, missing: list[str], found: list[str]
    ) -> None:
        self.missing = missing
        self.found = found
        super().__init__(path, problem, expected)


class SnapshotIntegrityError(BadSourceFile):
    """A snapshot's bytes no longer match the sha256 recorded in the manifest."""


class RowAccountingError(IngestionError):
    """accepted + quarantined != read: a row was lost or duplicated (a bug, never data)."""


class RawContractViolation(IngestionError):
    """A Great Expectations expectation at the failing severity did not hold."""

    def __init__(self, message: str, failures: list[dict[str, Any]]) -> None:
        self.failures = failures
        super().__init__(message)


class QuarantineThresholdExceeded(IngestionError):
    """Too large a share of rows was quarantined for the run to be trusted."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        self.report = report
        super().__init__(message)


class NoRowsAccepted(IngestionError):
    """Every row was quarantined (for example a file of neutral reviews only)."""
