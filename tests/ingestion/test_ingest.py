"""The ingest step: byte-for-byte, hashed, read-only snapshots and their manifest."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from ingestion import snapshot_sources, validate_sources
from ingestion.errors import (
    SnapshotConflict,
    SnapshotIntegrityError,
    SourceConfigError,
    SourceFileNotFound,
)
from tests.ingestion.filemakers import csv_bytes, padding


def test_snapshot_is_a_read_only_byte_copy_with_its_hash(write_file, run_dir: Path) -> None:
    first = write_file("a.csv", csv_bytes(padding(20)))
    second = write_file("b.csv.gz", os.urandom(300))
    manifest = snapshot_sources(
        [
            {"path": str(first), "source": "synthetic", "name": "first"},
            {
                "path": str(second),
                "name": "second",
                "text_column": "body",
                "label_column": "stars",
                "label_map": {"1": 0, "5": 1},
                "expected_unmapped": ["3"],
            },
        ],
        str(run_dir),
    )
    hashes = []
    for entry, original in zip(manifest["sources"], (first, second), strict=True):
        snap = Path(entry["snapshot"])
        assert snap == run_dir.resolve() / "raw" / entry["name"] / original.name
        assert snap.read_bytes() == original.read_bytes()
        assert entry["sha256"] == hashlib.sha256(original.read_bytes()).hexdigest()
        assert entry["bytes"] == original.stat().st_size
        assert entry["path"] == str(original.resolve())
        assert not snap.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
        hashes.append(entry["sha256"])
    expected_data_hash = hashlib.sha256(f"{hashes[0]}\n{hashes[1]}\n".encode()).hexdigest()
    assert manifest["data_sha256"] == expected_data_hash
    assert manifest["sources"][0]["text_column"] == "text"
    assert manifest["sources"][0]["expectation_suite"] == "raw_synthetic"
    assert manifest["sources"][1]["label_map"] == {"1": 0, "5": 1}
    assert manifest["sources"][1]["expected_unmapped"] == ["3"]
    assert json.loads((run_dir / "manifest.json").read_text()) == manifest
    assert not list(run_dir.rglob(".*tmp*"))


def test_data_hash_depends_on_content_and_order(write_file, tmp_path: Path) -> None:
    a = write_file("a.csv", csv_bytes(padding(5)))
    b = write_file("b.csv", csv_bytes(padding(5, start=5)))
    ab = snapshot_sources(
        [
            {"path": str(a), "source": "synthetic", "name": "a"},
            {"path": str(b), "source": "synthetic", "name": "b"},
        ],
        str(tmp_path / "r1"),
    )
    ba = snapshot_sources(
        [
            {"path": str(b), "source": "synthetic", "name": "b"},
            {"path": str(a), "source": "synthetic", "name": "a"},
        ],
        str(tmp_path / "r2"),
    )
    assert ab["data_sha256"] != ba["data_sha256"]


def test_retry_reuses_identical_snapshot_and_refuses_changed_bytes(
    write_file, run_dir: Path
) -> None:
    path = write_file("a.csv", csv_bytes(padding(5)))
    source = [{"path": str(path), "source": "synthetic"}]
    first = snapshot_sources(source, str(run_dir))
    again = snapshot_sources(source, str(run_dir))
    assert again["sources"][0]["sha256"] == first["sources"][0]["sha256"]
    path.write_bytes(csv_bytes(padding(6)))
    with pytest.raises(SnapshotConflict, match="immutable"):
        snapshot_sources(source, str(run_dir))
    snap = Path(first["sources"][0]["snapshot"])
    assert hashlib.sha256(snap.read_bytes()).hexdigest() == first["sources"][0]["sha256"]


def test_tampered_snapshot_is_refused_by_validation(write_file, run_dir: Path) -> None:
    path = write_file("a.csv", csv_bytes(padding(5)))
    manifest = snapshot_sources([{"path": str(path), "source": "synthetic"}], str(run_dir))
    snap = Path(manifest["sources"][0]["snapshot"])
    snap.chmod(0o644)
    snap.write_bytes(csv_bytes(padding(7)))
    with pytest.raises(SnapshotIntegrityError) as err:
        validate_sources(manifest, str(run_dir))
    assert str(snap) in str(err.value)
    assert manifest["sources"][0]["sha256"] in str(err.value)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "no sources"),
        ([{"path": "x.csv", "source": "nope"}], "unknown source 'nope'"),
        ([{"path": "x.csv", "text_column": "t", "label_column": "l"}], "lacks"),
        (
            [
                {
                    "path": "x.csv",
                    "name": "x",
                    "text_column": "t",
                    "label_column": "l",
                    "label_map": {"a": 2},
                }
            ],
            "values other than 0 or 1",
        ),
        (
            [{"path": "x.csv", "source": "kindle", "expected_unmapped": ["4"]}],
            "both in label_map and expected_unmapped",
        ),
        ([{"path": "x.csv", "source": "synthetic", "name": "../escape"}], "not usable as a folder"),
    ],
)
def test_bad_source_entries_are_rejected(entries: list[dict], message: str, run_dir: Path) -> None:
    with pytest.raises(SourceConfigError, match=message):
        snapshot_sources(entries, str(run_dir))
    assert not (run_dir / "manifest.json").exists()


def test_duplicate_names_and_missing_files(write_file, run_dir: Path) -> None:
    path = write_file("a.csv", csv_bytes(padding(3)))
    with pytest.raises(SourceConfigError, match=r"\['synthetic'\] are used more than once"):
        snapshot_sources(
            [
                {"path": str(path), "source": "synthetic"},
                {"path": str(path), "source": "synthetic"},
            ],
            str(run_dir),
        )
    missing = path.with_name("gone.csv")
    with pytest.raises(SourceFileNotFound) as err:
        snapshot_sources([{"path": str(missing), "source": "synthetic"}], str(run_dir))
    assert str(missing) in str(err.value) and "file not found" in str(err.value)
    assert not (run_dir / "manifest.json").exists()


def test_known_source_without_path_reads_the_datasets_dir(
    monkeypatch, write_file, run_dir: Path
) -> None:
    datasets = write_file("kindle_reviews_5core_sample_4905.csv.gz", b"placeholder").parent
    monkeypatch.setenv("DRIFTLOOP_DATASETS", str(datasets))
    manifest = snapshot_sources([{"source": "kindle"}], str(run_dir))
    assert manifest["sources"][0]["path"] == str(
        datasets / "kindle_reviews_5core_sample_4905.csv.gz"
    )
    with pytest.raises(SourceConfigError, match="no 'path'"):
        snapshot_sources([{"source": "synthetic"}], str(run_dir))
