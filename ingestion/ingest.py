"""The `ingest` step: an immutable, hashed snapshot of every raw input of a run.

Training reads the snapshot, never the original path, so a file replaced
upstream after the run started cannot change what the model was trained on,
and `data_sha256` identifies the exact input bytes in the model registry.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.settings import get_settings
from ingestion.atomic import atomic_target, write_json_atomic
from ingestion.errors import SnapshotConflict, SourceConfigError, SourceFileNotFound
from ingestion.sources import SourceSpec

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


def file_sha256(path: Path) -> tuple[str, int]:
    """sha256 hex digest and size of a file, streamed."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def data_sha256(file_hashes: list[str]) -> str:
    """One hash for a run's inputs: sha256 over the per-file hex digests, each + newline, in order."""
    return hashlib.sha256("".join(f"{h}\n" for h in file_hashes).encode()).hexdigest()


def _source_path(entry: dict[str, Any], spec: SourceSpec) -> Path:
    raw = entry.get("path")
    if raw:
        return Path(raw).expanduser().resolve()
    default = spec.default_file()
    if default is None:
        raise SourceConfigError(
            f"source entry {entry!r} has no 'path' and contracts/sources.yaml gives no 'file' "
            f"for {spec.name!r}: pass the file's path"
        )
    return get_settings().datasets_dir / default


def _copy_immutable(src: Path, dest: Path) -> tuple[str, int]:
    """Copy src to dest byte for byte (hashing as it goes) and make dest read-only.

    A retry of the same run finds the snapshot already there: identical bytes
    are reused, different bytes are a conflict (a snapshot is never rewritten).
    """
    if dest.exists():
        existing_sha, existing_size = file_sha256(dest)
        src_sha, _ = file_sha256(src)
        if existing_sha != src_sha:
            raise SnapshotConflict(
                f"{dest} already holds a snapshot with sha256 {existing_sha}, but {src} now has "
                f"sha256 {src_sha}; a snapshot is immutable: use a new run folder"
            )
        return existing_sha, existing_size
    digest = hashlib.sha256()
    size = 0
    with atomic_target(dest) as tmp:
        with open(src, "rb") as reader, open(tmp, "wb") as writer:
            while chunk := reader.read(CHUNK_BYTES):
                digest.update(chunk)
                writer.write(chunk)
                size += len(chunk)
            writer.flush()
            os.fsync(writer.fileno())
        os.chmod(tmp, READ_ONLY)
    return digest.hexdigest(), size


def snapshot_sources(sources: list[dict], run_dir: str) -> dict:
    """Snapshot each source into <run_dir>/raw/<name>/<filename>; write and return the manifest.

    `sources` entries are `{"path": ..., "source": <key of contracts/sources.yaml>}` or
    inline `{"path", "name", "text_column", "label_column", "label_map"}`. The manifest
    holds per source name, path, snapshot, sha256, bytes and the resolved column/label
    mapping, plus `data_sha256` over all file hashes in order.
    """
    if not sources:
        raise SourceConfigError("no sources given: pass at least one {'path': ..., 'source': ...}")
    specs = [SourceSpec.from_entry(entry) for entry in sources]
    names = [spec.name for spec in specs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise SourceConfigError(
            f"source names {duplicated} are used more than once; give each entry a distinct 'name'"
        )
    run = Path(run_dir).expanduser().resolve()
    entries: list[dict[str, Any]] = []
    for entry, spec in zip(sources, specs, strict=True):
        src = _source_path(entry, spec)
        if not src.is_file():
            raise SourceFileNotFound(src, "file not found", f"the raw file of source {spec.name!r}")
        dest = run / "raw" / spec.name / src.name
        sha, size = _copy_immutable(src, dest)
        logger.info("snapshot %s: %s -> %s (%d bytes, sha256 %s)", spec.name, src, dest, size, sha)
        entries.append(
            {
                "name": spec.name,
                "path": str(src),
                "snapshot": str(dest),
                "sha256": sha,
                "bytes": size,
                **spec.to_manifest(),
            }
        )
    manifest = {
        "sources": entries,
        "data_sha256": data_sha256([e["sha256"] for e in entries]),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json_atomic(run / "manifest.json", manifest)
    logger.info("manifest %s (data_sha256 %s)", run / "manifest.json", manifest["data_sha256"])
    return manifest
