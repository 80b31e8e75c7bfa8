"""Ingestion: immutable snapshots of raw sources and their validation (GE + Pandera + quarantine).

The training DAG's `ingest` task calls `snapshot_sources`, its `validate_raw`
task calls `validate_sources`. Great Expectations is imported lazily.
"""

from ingestion.errors import (
    BadSourceFile,
    IngestionError,
    QuarantineThresholdExceeded,
    RawContractViolation,
)
from ingestion.ingest import snapshot_sources
from ingestion.validate import validate_sources

__all__ = [
    "BadSourceFile",
    "IngestionError",
    "QuarantineThresholdExceeded",
    "RawContractViolation",
    "snapshot_sources",
    "validate_sources",
]
