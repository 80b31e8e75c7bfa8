"""Files that cannot be trusted at all fail clearly and leave nothing for the next step to read."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from ingestion import snapshot_sources, validate_sources
from ingestion.errors import (
    BadSourceFile,
    CorruptSourceFile,
    EmptySourceFile,
    MalformedSourceFile,
    MissingColumns,
    UnsupportedFormat,
    WrongDelimiter,
)
from tests.ingestion.filemakers import csv_bytes, padding

IMDB_HEADER = ("review", "sentiment")


def imdb_rows(n: int) -> list[tuple[str, str]]:
    return [
        (f"Movie review {i}, with a comma.", "positive" if i % 2 else "negative") for i in range(n)
    ]


def truncated_gzip() -> bytes:
    whole = gzip.compress(csv_bytes(imdb_rows(3000), IMDB_HEADER))
    return whole[: len(whole) // 2]


CASES = [
    pytest.param(
        "imdb.csv.gz",
        truncated_gzip(),
        CorruptSourceFile,
        ["truncated or damaged", "compressed stream", "complete, readable .csv.gz"],
        id="truncated-gzip",
    ),
    pytest.param(
        "imdb.csv",
        csv_bytes(imdb_rows(20), IMDB_HEADER, sep=";"),
        WrongDelimiter,
        ["delimiter ';'", "not ','", "['review', 'sentiment']", "delimiter: ';'"],
        id="wrong-delimiter",
    ),
    pytest.param(
        "imdb.csv",
        csv_bytes(imdb_rows(20), ("review", "sentiment_label")),
        MissingColumns,
        [
            "schema drift",
            "['sentiment'] missing",
            "renamed to 'sentiment_label'",
            "contracts/sources.yaml",
        ],
        id="renamed-label-column",
    ),
    pytest.param(
        "imdb.csv",
        csv_bytes([(r[0],) for r in imdb_rows(20)], ("review",)),
        MissingColumns,
        ["['sentiment'] missing", "the file has ['review']", "'sentiment' (label)"],
        id="missing-label-column",
    ),
    pytest.param("imdb.csv", b"", EmptySourceFile, ["empty (0 bytes)"], id="zero-bytes"),
    pytest.param(
        "imdb.csv.gz", gzip.compress(b""), EmptySourceFile, ["no header line"], id="empty-gzip"
    ),
    pytest.param(
        "imdb.csv", b"review,sentiment\n", EmptySourceFile, ["no data rows"], id="header-only"
    ),
    pytest.param(
        "imdb.csv",
        b'review,sentiment\n"fine",positive\n"never closed,negative\n',
        MalformedSourceFile,
        ["do not parse", "EOF inside string", "balanced double quotes"],
        id="unbalanced-quote",
    ),
    pytest.param(
        "imdb.csv",
        b"review,sentiment\nfine,positive\ntoo,many,fields\n",
        MalformedSourceFile,
        ["Expected 2 fields in line 3, saw 3"],
        id="ragged-row",
    ),
    pytest.param(
        "imdb.csv",
        b"review,sentiment\nshifted,positive,extra\nalso,negative,extra\n",
        MalformedSourceFile,
        ["more fields than the header"],
        id="every-row-one-field-too-many",
    ),
    pytest.param(
        "imdb.xlsx",
        b"PK\x03\x04 not a csv",
        UnsupportedFormat,
        ["suffix .xlsx"],
        id="unknown-suffix",
    ),
]


@pytest.mark.parametrize(("name", "data", "error", "fragments"), CASES)
def test_bad_file_fails_clearly(
    name: str,
    data: bytes,
    error: type[BadSourceFile],
    fragments: list[str],
    write_file,
    run_dir: Path,
) -> None:
    path = write_file(name, data)
    manifest = snapshot_sources([{"path": str(path), "source": "imdb"}], str(run_dir))
    # A previous attempt's outputs must not survive a failed retry.
    (run_dir / "accepted.parquet").write_bytes(b"stale")
    with pytest.raises(error) as caught:
        validate_sources(manifest, str(run_dir))
    message = str(caught.value)
    assert manifest["sources"][0]["snapshot"] in message
    assert "Expected:" in message
    for fragment in fragments:
        assert fragment in message
    assert not (run_dir / "accepted.parquet").exists()
    assert not (run_dir / "quarantine.parquet").exists()


def test_corrupt_parquet_and_jsonl(write_file, run_dir: Path) -> None:
    inline = {
        "name": "x",
        "text_column": "text",
        "label_column": "label",
        "label_map": {"0": 0, "1": 1},
    }
    parquet = write_file("x.parquet", b"PAR1 this is not a parquet footer")
    jsonl = write_file("y.jsonl", b'{"text": "ok", "label": 1}\n{"text": "broken", "label": \n')
    manifest = snapshot_sources(
        [{**inline, "path": str(parquet)}, {**inline, "name": "y", "path": str(jsonl)}],
        str(run_dir),
    )
    with pytest.raises(CorruptSourceFile, match="not a readable Parquet file"):
        validate_sources({"sources": manifest["sources"][:1]}, str(run_dir))
    with pytest.raises(MalformedSourceFile, match="line 2 is not valid JSON"):
        validate_sources({"sources": manifest["sources"][1:]}, str(run_dir))


def test_parquet_schema_drift_is_caught_before_reading_rows(write_file, run_dir: Path) -> None:
    path = write_file("p.parquet", b"")
    pd.DataFrame({"body": ["a"], "label": [1]}).to_parquet(path)
    manifest = snapshot_sources([{"path": str(path), "source": "synthetic"}], str(run_dir))
    with pytest.raises(MissingColumns) as caught:
        validate_sources(manifest, str(run_dir))
    assert caught.value.missing == ["text"]
    assert caught.value.found == ["body", "label"]


def test_declared_delimiter_reads_a_semicolon_file(write_file, run_dir: Path) -> None:
    """The remedy the WrongDelimiter message suggests works."""
    from ingestion.readers import read_raw
    from ingestion.sources import SourceSpec

    path = write_file("s.csv", csv_bytes(padding(4), sep=";"))
    spec = SourceSpec.from_entry({"source": "synthetic", "delimiter": ";"})
    frame = read_raw(path, spec)
    assert frame["label"].tolist() == ["0", "1", "0", "1"]
    assert json.dumps(spec.to_manifest())  # the mapping stays JSON-able for the manifest
