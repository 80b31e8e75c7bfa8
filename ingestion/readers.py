"""Read one raw file (CSV, Parquet or JSONL, by suffix) into a frame, or fail clearly.

CSV cells are all read as strings with pandas' NA detection off, so the
literal review "NA" stays text and a label cell keeps its exact token (the
quarantine records it as written). Bytes that are not valid UTF-8 do not fail
the file: they become lone surrogates (`surrogateescape`) and the row is
quarantined as `text_undecodable`. What does fail the file is listed in
ingestion.errors: every message names the file, the problem and what was
expected.
"""

from __future__ import annotations

import bz2
import csv
import difflib
import gzip
import json
import lzma
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pandas as pd

from ingestion.errors import (
    BadSourceFile,
    CorruptSourceFile,
    EmptySourceFile,
    MalformedSourceFile,
    MissingColumns,
    SourceFileNotFound,
    UnsupportedFormat,
    WrongDelimiter,
)
from ingestion.sources import SourceSpec

SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
COMPRESSIONS: dict[str, Callable[..., IO[str]]] = {
    ".gz": gzip.open,
    ".bz2": bz2.open,
    ".xz": lzma.open,
}
CANDIDATE_DELIMITERS = (",", ";", "\t", "|")
_DAMAGED = (EOFError, zlib.error, lzma.LZMAError, OSError)


def detect_format(path: Path, spec: SourceSpec) -> str:
    """csv, parquet or jsonl from the spec's `format` or the suffix (after .gz/.bz2/.xz)."""
    if spec.format:
        if spec.format not in set(SUFFIX_FORMATS.values()):
            raise UnsupportedFormat(
                path,
                f"source {spec.name!r} declares format {spec.format!r}",
                "csv, parquet or jsonl",
            )
        return spec.format
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    fmt = SUFFIX_FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise UnsupportedFormat(
            path,
            f"cannot tell the format from the suffix {''.join(path.suffixes) or '(none)'}",
            f"one of {sorted(SUFFIX_FORMATS)} optionally followed by {sorted(COMPRESSIONS)}, "
            "or `format:` set for the source",
        )
    return fmt


def _open_text(path: Path) -> IO[str]:
    opener = COMPRESSIONS.get(path.suffix.lower())
    if opener is None:
        return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
    return opener(path, "rt", encoding="utf-8-sig", errors="surrogateescape", newline="")


@contextmanager
def _translate_errors(path: Path, fmt: str) -> Iterator[None]:
    """Turn library errors about damaged bytes into BadSourceFile subclasses."""
    try:
        yield
    except BadSourceFile:
        raise
    except FileNotFoundError as exc:
        raise SourceFileNotFound(path, "file not found", "an existing file") from exc
    except PermissionError as exc:
        raise BadSourceFile(path, "permission denied", "a file the task's user can read") from exc
    except pd.errors.EmptyDataError as exc:
        raise EmptySourceFile(
            path,
            "the file is empty (no header line)",
            "a header line naming the columns and at least one data row",
        ) from exc
    except pd.errors.ParserError as exc:
        raise MalformedSourceFile(
            path,
            f"the CSV records do not parse ({' '.join(str(exc).split())})",
            "balanced double quotes and the same number of fields in every record as in the header",
        ) from exc
    except pd.errors.ParserWarning as exc:
        raise MalformedSourceFile(
            path,
            f"data rows have more fields than the header ({exc})",
            "the same number of fields in every record as in the header",
        ) from exc
    except _DAMAGED as exc:
        kind = "compressed stream" if path.suffix.lower() in COMPRESSIONS else f"{fmt} file"
        raise CorruptSourceFile(
            path,
            f"the {kind} is truncated or damaged ({type(exc).__name__}: {exc})",
            f"a complete, readable {''.join(path.suffixes)} file: copy or export it again",
        ) from exc
    except Exception as exc:
        if type(exc).__module__.startswith("pyarrow"):
            raise CorruptSourceFile(
                path, f"not a readable Parquet file ({exc})", "a complete Parquet file"
            ) from exc
        raise


def _missing_columns(path: Path, spec: SourceSpec, found: list[str]) -> MissingColumns:
    missing = [col for col in spec.required_columns if col not in found]
    hints = []
    for col in missing:
        close = difflib.get_close_matches(col, found, n=2, cutoff=0.5)
        if close:
            hints.append(f"{col!r} may have been renamed to {' or '.join(map(repr, close))}")
    origin = (
        f"source {spec.source!r} in contracts/sources.yaml" if spec.source else "the source entry"
    )
    if spec.text_column is not None:
        expected = f"columns {spec.text_column!r} (text) and {spec.label_column!r} (label)"
    else:
        expected = f"columns {spec.file_columns} and {spec.label_column!r} (label)"
    return MissingColumns(
        path,
        f"schema drift: column(s) {missing} missing; the file has {found}"
        + (f" ({'; '.join(hints)})" if hints else ""),
        f"{expected} as {origin} says; if the file legitimately changed, update that mapping",
        missing=missing,
        found=found,
    )


def _csv_header(path: Path, delimiter: str) -> list[str]:
    with _open_text(path) as handle:
        row = next(csv.reader(handle, delimiter=delimiter), None)
    if not row or row == [""]:
        raise EmptySourceFile(
            path,
            "the file is empty (no header line)",
            "a header line naming the columns and at least one data row",
        )
    return [c.strip() for c in row]


def _check_csv_header(path: Path, spec: SourceSpec) -> None:
    """Fail before parsing the whole file when the header cannot hold the mapping."""
    header = _csv_header(path, spec.delimiter)
    needed = spec.required_columns
    if all(col in header for col in needed):
        return
    for other in CANDIDATE_DELIMITERS:
        if other != spec.delimiter and all(col in _csv_header(path, other) for col in needed):
            raise WrongDelimiter(
                path,
                f"the header splits into the expected columns only with delimiter {other!r}, "
                f"not {spec.delimiter!r} (read as {header})",
                f"{spec.delimiter!r}-separated columns {needed}; if the file is meant to be "
                f"{other!r}-separated set `delimiter: {other!r}` for the source",
            )
    raise _missing_columns(path, spec, header)


def _read_csv(path: Path, spec: SourceSpec) -> pd.DataFrame:
    _check_csv_header(path, spec)
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        return pd.read_csv(
            path,
            sep=spec.delimiter,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            index_col=False,
            encoding="utf-8-sig",
            encoding_errors="surrogateescape",
            low_memory=False,
        )


def _read_jsonl(path: Path) -> pd.DataFrame:
    records: list[dict[str, Any]] = []
    with _open_text(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MalformedSourceFile(
                    path,
                    f"line {line_no} is not valid JSON ({exc.msg} at column {exc.colno})",
                    "one JSON object per line",
                ) from exc
            if not isinstance(record, dict):
                raise MalformedSourceFile(
                    path,
                    f"line {line_no} holds a JSON {type(record).__name__}, not an object",
                    "one JSON object per line",
                )
            records.append(record)
    if not records:
        raise EmptySourceFile(
            path, "the file holds no JSON records", "at least one JSON object per line"
        )
    return pd.DataFrame.from_records(records)


def _read_parquet(path: Path, spec: SourceSpec) -> pd.DataFrame:
    import pyarrow.parquet as pq

    names = list(pq.read_schema(path).names)
    if any(col not in names for col in spec.required_columns):
        raise _missing_columns(path, spec, names)
    return pd.read_parquet(path)


def read_raw(path: str | Path, spec: SourceSpec) -> pd.DataFrame:
    """The file's rows with a 0-based RangeIndex (= source row number), all columns kept."""
    path = Path(path)
    if not path.is_file():
        raise SourceFileNotFound(path, "file not found", f"the raw file of source {spec.name!r}")
    if path.stat().st_size == 0:
        raise EmptySourceFile(
            path, "the file is empty (0 bytes)", "a header line and at least one data row"
        )
    fmt = detect_format(path, spec)
    with _translate_errors(path, fmt):
        if fmt == "csv":
            frame = _read_csv(path, spec)
        elif fmt == "parquet":
            frame = _read_parquet(path, spec)
        else:
            frame = _read_jsonl(path)
    found = [str(c) for c in frame.columns]
    if any(col not in found for col in spec.required_columns):
        raise _missing_columns(path, spec, found)
    if frame.empty:
        raise EmptySourceFile(
            path, "the file has a header but no data rows", "at least one data row"
        )
    return frame.reset_index(drop=True)
