"""Raw reviews -> training-ready Parquet: clean, de-duplicate, map labels, split, featurize.

The features are computed by `features.reviews.build_features` inside `mapInPandas`: the very
function the API calls online, so training and serving cannot disagree about a feature.

What a run guarantees:
- every input row is accounted for: written, removed as an exact duplicate, or quarantined with
  a reason code (`rows_read == rows_written + duplicates_removed + quarantined_total`);
- `review_id` (first 16 hex of the sha256 of the raw text) and the hash split depend only on the
  text, so reruns on any number of partitions give the same ids and splits, and copies of one
  text never straddle splits;
- outputs are written to a temporary folder and renamed into place, so a failed run never leaves
  a half-written `features/` where the next step reads.

Layout of `<output_dir>`: `features/` (Parquet: review_id, text, label, split, then
FEATURE_COLUMNS), `quarantine/` (Parquet: source_row, review_id, text, raw_label, raw_split,
reason) and `stats.json`. `source_row` is the 0-based position of the record as Spark reads the
input (file order for a single file). Row checks run first (empty_text, text_too_long,
label_unmapped, split_unmapped); copies of one text are compared among the rows that pass them:
all copies are quarantined when their labels disagree, otherwise the first one read is kept.
The output folder is local; the input may be any path Spark reads.

Run it in-process (`featurize(spark, ...)`), as a module
(`python -m jobs.spark.featurize --input PATH --output DIR --source imdb`) or with spark-submit:

    PYSPARK_PYTHON=$PWD/.venv/bin/python .venv/bin/spark-submit jobs/spark/featurize.py \\
        --input data.csv.gz --output out/ --source imdb

(`--conf spark.pyspark.python=... --conf spark.pyspark.driver.python=...` works as well). On a
cluster, ship `features/`, `contracts/` and `jobs/` with `--py-files`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

if not __package__:
    # Started as a script (spark-submit jobs/spark/featurize.py): make the repository importable
    # and fail in one line when Spark picked an interpreter without the project's packages.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    _missing = [name for name in ("pandas", "pyarrow") if importlib.util.find_spec(name) is None]
    if _missing:
        sys.exit(
            f"featurize: error: the Python running the driver ({sys.executable}) lacks "
            f"{', '.join(_missing)}; set PYSPARK_PYTHON (and PYSPARK_DRIVER_PYTHON) to the "
            "project's .venv/bin/python"
        )

import pandas as pd
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from contracts.reviews import (
    FEATURE_CONTRACT_VERSION,
    LABEL_NAMES,
    MAX_TEXT_CHARS,
    RAW_LABEL,
    RAW_TEXT,
    ROW_ID,
    SPLIT,
    SPLITS,
    load_sources,
    training_frame_schema,
)
from features.reviews import FEATURE_COLUMNS, FEATURE_DTYPES
from jobs.spark.feature_batches import make_feature_batches, output_schema
from jobs.spark.session import build_session

logger = logging.getLogger("jobs.spark.featurize")

# The canonical label values, derived from the contract: "0"/"1" and the label names.
CANONICAL_LABEL_MAP: dict[str, int] = {
    **{str(code): code for code in LABEL_NAMES},
    **{name: code for code, name in LABEL_NAMES.items()},
}

# Values a source's split column may hold (lower-cased, trimmed) -> canonical split.
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "valid": "valid",
    "validation": "valid",
    "val": "valid",
    "dev": "valid",
    "test": "test",
    "testing": "test",
}

# File name endings -> Spark reader. A folder is read as Parquet.
INPUT_FORMATS: tuple[tuple[str, str], ...] = (
    (".csv", "csv"),
    (".csv.gz", "csv"),
    (".parquet", "parquet"),
    (".jsonl", "json"),
    (".jsonl.gz", "json"),
    (".ndjson", "json"),
    (".json", "json"),
    (".json.gz", "json"),
)

# Multi-line quoted fields (the Datafiniti file has line breaks inside quotes); every column is
# read as a string so labels like "5.0" reach the label map unchanged.
CSV_OPTIONS: dict[str, str] = {
    "header": "true",
    "multiLine": "true",
    "escape": '"',
    "quote": '"',
    "inferSchema": "false",
    "mode": "PERMISSIVE",
}

FEATURES_DIR = "features"
QUARANTINE_DIR = "quarantine"
STATS_FILE = "stats.json"

# monotonically_increasing_id() keeps the partition index above bit 33.
_ROW_BITS = 33


class Reason(StrEnum):
    """Why a row was quarantined, in the order the checks run."""

    EMPTY_TEXT = "empty_text"
    TEXT_TOO_LONG = "text_too_long"
    LABEL_UNMAPPED = "label_unmapped"
    SPLIT_UNMAPPED = "split_unmapped"
    CONFLICTING_LABELS = "conflicting_labels"


_KEPT = "kept"
_DUPLICATE = "duplicate"


class FeaturizeError(Exception):
    """A problem with the job's input or arguments that the user can fix."""


class InputNotFoundError(FeaturizeError, FileNotFoundError):
    """The input path does not exist."""


class UnsupportedInputError(FeaturizeError, ValueError):
    """The input's format cannot be told from its name."""


class MissingColumnsError(FeaturizeError, ValueError):
    """The input lacks a column the source mapping names."""


class UnreadableInputError(FeaturizeError):
    """Spark could not read or parse the input."""


class ConfigurationError(FeaturizeError, ValueError):
    """Inconsistent arguments: unknown source, bad label map or split fractions."""


@dataclass(frozen=True)
class SourceSpec:
    """How to read one raw source: its column names and its label map."""

    text_column: str
    label_column: str
    label_map: dict[str, int]


def resolve_source(
    source: str | None,
    text_column: str = RAW_TEXT,
    label_column: str = RAW_LABEL,
    label_map: Mapping[str, int] | None = None,
) -> SourceSpec:
    """The column names and label map of `source` (from sources.yaml), else the explicit ones."""
    if source is not None:
        sources = load_sources()
        if source not in sources:
            raise ConfigurationError(
                f"unknown source {source!r}; contracts/sources.yaml defines {sorted(sources)}"
            )
        if text_column != RAW_TEXT or label_column != RAW_LABEL or label_map is not None:
            raise ConfigurationError(
                f"source {source!r} already names its columns and label map; "
                "pass either a source or explicit columns, not both"
            )
        entry = sources[source]
        text_column, label_column = entry["text_column"], entry["label_column"]
        label_map = entry["label_map"]
    mapping = {str(key): value for key, value in (label_map or CANONICAL_LABEL_MAP).items()}
    bad = {key: value for key, value in mapping.items() if value not in LABEL_NAMES}
    if bad or not mapping:
        raise ConfigurationError(
            f"label map must send raw values to {sorted(LABEL_NAMES)}; got {bad or mapping}"
        )
    return SourceSpec(text_column, label_column, {key: int(v) for key, v in mapping.items()})


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(x) for x in fractions)
    if len(values) != 3 or min(values) < 0 or values[0] <= 0 or abs(sum(values) - 1.0) > 1e-6:
        raise ConfigurationError(
            "split_fractions must be three non-negative numbers (train, valid, test) "
            f"summing to 1 with train > 0; got {fractions}"
        )
    return values[0], values[1], values[2]


def _local_path(path: str) -> Path | None:
    """The local path behind `path`, or None for a remote URI (s3a://, hdfs://, ...)."""
    if path.startswith("file://"):
        return Path(path[len("file://") :])
    if path.startswith("file:"):
        return Path(path[len("file:") :])
    if "://" in path:
        return None
    return Path(path)


def input_format(path: str) -> str:
    """Spark reader for `path` by its suffix: csv, parquet or json; a folder is Parquet."""
    local = _local_path(path)
    if local is not None and local.is_dir():
        return "parquet"
    name = path.rstrip("/").lower()
    for suffix, fmt in sorted(INPUT_FORMATS, key=lambda item: -len(item[0])):
        if name.endswith(suffix):
            return fmt
    raise UnsupportedInputError(
        f"cannot tell the format of {path} from its name; expected one of "
        f"{', '.join(suffix for suffix, _ in INPUT_FORMATS)} or a Parquet folder"
    )


def _check_exists(path: str) -> None:
    local = _local_path(path)
    if local is not None and not local.exists():
        raise InputNotFoundError(f"input not found: {path}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_raw(spark: SparkSession, path: str) -> tuple[DataFrame, str]:
    """The input as a Spark DataFrame and its format name."""
    _check_exists(path)
    fmt = input_format(path)
    try:
        if fmt == "csv":
            frame = spark.read.options(**CSV_OPTIONS).csv(path)
        elif fmt == "json":
            frame = spark.read.json(path)
        else:
            frame = spark.read.parquet(path)
    except PySparkException as exc:
        if exc.getCondition() == "PATH_NOT_FOUND":
            raise InputNotFoundError(f"input not found: {path}") from exc
        raise UnreadableInputError(f"could not read {path} as {fmt}: {_first_line(exc)}") from exc
    except Py4JJavaError as exc:
        raise UnreadableInputError(f"could not read {path} as {fmt}: {_first_line(exc)}") from exc
    return frame, fmt


def _col(name: str) -> Column:
    """A column by its literal name, dots and all (`reviews.text`)."""
    return F.col("`" + name.replace("`", "``") + "`")


def _literal_map(mapping: Mapping[str, Any], value_type: str) -> Column:
    pairs: list[Column] = []
    for key, value in mapping.items():
        pairs += [F.lit(key), F.lit(value).cast(value_type)]
    return F.create_map(*pairs)


def _strip(column: Column) -> Column:
    # Unicode whitespace at both ends, like str.strip() in contracts.map_label.
    return F.regexp_replace(column, r"(?U)^\s+|\s+$", "")


def _classify(
    raw: DataFrame,
    spec: SourceSpec,
    split_column: str | None,
    fractions: tuple[float, float, float],
) -> DataFrame:
    """One row per input row with its label, id, split and outcome (a reason, duplicate, kept)."""
    text = F.col(RAW_TEXT)
    labels = _literal_map(spec.label_map, "long")
    raw_label = _strip(F.col("raw_label"))
    digest = F.sha2(text, 256)
    # 32 hash bits after the id's 64 -> a uniform number in [0, 1) that only the text decides.
    bucket = F.conv(F.substring(digest, 17, 8), 16, 10).cast("long") / float(1 << 32)

    train, valid, _ = fractions
    if split_column is None:
        split = (
            F.when(bucket < train, "train").when(bucket < train + valid, "valid").otherwise("test")
        )
        carve = F.lit(None).cast("boolean")
    else:
        split = F.try_element_at(
            _literal_map(SPLIT_ALIASES, "string"), F.lower(_strip(F.col("raw_split")))
        )
        # Used only when the column holds no valid rows: this train share moves to valid.
        carve = bucket < (valid / (train + valid))

    rows = raw.select(
        F.monotonically_increasing_id().alias("_mid"),
        _col(spec.text_column).cast("string").alias(RAW_TEXT),
        _col(spec.label_column).cast("string").alias("raw_label"),
        (_col(split_column).cast("string") if split_column else F.lit(None).cast("string")).alias(
            "raw_split"
        ),
    ).select(
        "*",
        F.substring(digest, 1, 16).alias(ROW_ID),
        F.coalesce(
            F.try_element_at(labels, raw_label), F.try_element_at(labels, F.lower(raw_label))
        ).alias(RAW_LABEL),
        split.alias("_split"),
        carve.alias("_carve"),
    )
    empty = text.isNull() | text.rlike(r"(?U)\A\s*\z")
    reason = (
        F.when(empty, Reason.EMPTY_TEXT.value)
        .when(F.length(text) > MAX_TEXT_CHARS, Reason.TEXT_TOO_LONG.value)
        .when(F.col(RAW_LABEL).isNull(), Reason.LABEL_UNMAPPED.value)
        .when(F.col("_split").isNull(), Reason.SPLIT_UNMAPPED.value)
    )
    rows = rows.withColumn("_reason", reason)

    # Copies of one text are compared only among rows that passed the row checks.
    group = Window.partitionBy(ROW_ID, F.col("_reason").isNull())
    conflicting = F.min(RAW_LABEL).over(group) != F.max(RAW_LABEL).over(group)
    rank = F.row_number().over(group.orderBy("_mid"))
    outcome = F.coalesce(
        F.col("_reason"),
        F.when(conflicting, Reason.CONFLICTING_LABELS.value)
        .when(rank > 1, _DUPLICATE)
        .otherwise(_KEPT),
    )
    return rows.withColumn("outcome", outcome).drop("_reason")


@dataclass
class _Tally:
    rows_read: int
    offsets: dict[int, int]
    outcomes: dict[str, int]
    kept: dict[str, int]
    positives: dict[str, int]
    carve_valid: bool


def _tally(classified: DataFrame, split_column: str | None) -> _Tally:
    """Every count the stats need, from one aggregate over the classified rows."""
    grouped = (
        classified.groupBy(
            F.shiftright("_mid", _ROW_BITS).alias("part"), "outcome", "_split", "_carve"
        )
        .agg(F.count(F.lit(1)).alias("n"), F.sum(RAW_LABEL).alias("positives"))
        .collect()
    )
    per_part: dict[int, int] = {}
    outcomes: dict[str, int] = {}
    seen_splits: set[str] = set()
    for row in grouped:
        per_part[row["part"]] = per_part.get(row["part"], 0) + row["n"]
        outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + row["n"]
        if row["_split"] is not None:
            seen_splits.add(row["_split"])
    carve_valid = split_column is not None and "valid" not in seen_splits

    kept = dict.fromkeys(SPLITS, 0)
    positives = dict.fromkeys(SPLITS, 0)
    for row in grouped:
        if row["outcome"] != _KEPT:
            continue
        split = "valid" if carve_valid and row["_split"] == "train" and row["_carve"] else None
        split = split or row["_split"]
        kept[split] += row["n"]
        positives[split] += row["positives"] or 0

    offsets: dict[int, int] = {}
    running = 0
    for part in sorted(per_part):
        offsets[part] = running
        running += per_part[part]
    return _Tally(running, offsets, outcomes, kept, positives, carve_valid)


def _swap_into_place(staged: Path, final: Path) -> None:
    """Replace `final` by `staged` with renames only, so readers never see a partial folder."""
    retired = final.with_name(f"_old-{final.name}-{uuid.uuid4().hex[:8]}")
    if final.exists():
        os.replace(final, retired)
    os.replace(staged, final)
    shutil.rmtree(retired, ignore_errors=True)


def _output_dir(output_dir: str | os.PathLike[str]) -> Path:
    local = _local_path(os.fspath(output_dir))
    if local is None:
        raise ConfigurationError(
            f"output must be a local folder (it is renamed into place); got {output_dir}"
        )
    return local.resolve()


def featurize(
    spark: SparkSession,
    input_path: str,
    output_dir: str,
    *,
    source: str | None = None,
    text_column: str = RAW_TEXT,
    label_column: str = RAW_LABEL,
    label_map: dict[str, int] | None = None,
    split_column: str | None = None,
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> dict[str, Any]:
    """Turn the raw source at `input_path` into `<output_dir>/features/`; return the stats.

    `source` names an entry of contracts/sources.yaml (its columns and label map); otherwise
    `text_column`, `label_column` and `label_map` (default: 0/1/negative/positive) apply.
    Without `split_column` each text goes to train/valid/test by its hash with
    `split_fractions`; with it, the column's values are used, and when they hold no `valid`
    rows a `valid / (train + valid)` share of train is moved to valid by hash.
    """
    started = time.perf_counter()
    input_path = os.fspath(input_path)
    spec = resolve_source(source, text_column, label_column, label_map)
    fractions = _check_fractions(split_fractions)
    out = _output_dir(output_dir)

    raw, fmt = read_raw(spark, input_path)
    needed = {"text": spec.text_column, "label": spec.label_column}
    if split_column is not None:
        needed["split"] = split_column
    missing = {role: name for role, name in needed.items() if name not in raw.columns}
    if missing:
        names = ", ".join(f"{name!r} ({role})" for role, name in missing.items())
        raise MissingColumnsError(
            f"{input_path}: missing column(s) {names}; columns found: {raw.columns}"
        )
    logger.info("reading %s (%s): columns %s", input_path, fmt, needed)

    classified = _classify(raw, spec, split_column, fractions).persist()
    try:
        try:
            tally = _tally(classified, split_column)
        except (PySparkException, Py4JJavaError) as exc:
            raise UnreadableInputError(
                f"could not read {input_path} as {fmt}: {_first_line(exc)}"
            ) from exc
        quarantined = {reason.value: tally.outcomes.get(reason.value, 0) for reason in Reason}
        duplicates = tally.outcomes.get(_DUPLICATE, 0)
        written = tally.outcomes.get(_KEPT, 0)
        logger.info("read %d rows", tally.rows_read)
        logger.info("quarantined %d rows: %s", sum(quarantined.values()), quarantined)
        logger.info("removed %d exact duplicates", duplicates)
        if tally.rows_read != written + duplicates + sum(quarantined.values()):
            raise RuntimeError(f"row accounting does not add up: {tally}")

        # A literal map needs at least one entry to have a type, even for an empty input.
        offsets = _literal_map({str(k): v for k, v in tally.offsets.items()} or {"0": 0}, "long")
        part = F.shiftright("_mid", _ROW_BITS).cast("string")
        source_row = F.try_element_at(offsets, part) + F.col("_mid").bitwiseAND(
            (1 << _ROW_BITS) - 1
        )
        split = F.col("_split")
        if tally.carve_valid:
            split = F.when((split == "train") & F.col("_carve"), "valid").otherwise(split)

        quarantine = classified.filter(~F.col("outcome").isin(_KEPT, _DUPLICATE)).select(
            source_row.alias("source_row"),
            F.when(F.col(RAW_TEXT).isNotNull(), F.col(ROW_ID)).alias(ROW_ID),
            RAW_TEXT,
            "raw_label",
            "raw_split",
            F.col("outcome").alias("reason"),
        )
        keep = [ROW_ID, RAW_TEXT, RAW_LABEL, SPLIT]
        kept = classified.filter(F.col("outcome") == _KEPT).select(
            ROW_ID, RAW_TEXT, RAW_LABEL, split.alias(SPLIT)
        )
        features = kept.mapInPandas(
            make_feature_batches(keep, RAW_TEXT), schema=output_schema(kept.schema, keep)
        )

        out.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex[:8]
        staged_features = out / f"_tmp-{FEATURES_DIR}-{token}"
        staged_quarantine = out / f"_tmp-{QUARANTINE_DIR}-{token}"
        try:
            features.write.parquet(str(staged_features))
            logger.info("computed features for %d rows: %s", written, tally.kept)
            quarantine.coalesce(1).write.parquet(str(staged_quarantine))
            (out / STATS_FILE).unlink(missing_ok=True)
            _swap_into_place(staged_features, out / FEATURES_DIR)
            _swap_into_place(staged_quarantine, out / QUARANTINE_DIR)
        finally:
            for staged in (staged_features, staged_quarantine):
                shutil.rmtree(staged, ignore_errors=True)
    finally:
        classified.unpersist()

    stats: dict[str, Any] = {
        "input_path": input_path,
        "input_format": fmt,
        "source": source,
        "text_column": spec.text_column,
        "label_column": spec.label_column,
        "label_map": spec.label_map,
        "split_column": split_column,
        "split_method": (
            "hash"
            if split_column is None
            else "column+valid_carved_from_train"
            if tally.carve_valid
            else "column"
        ),
        "split_fractions": list(fractions),
        "rows_read": tally.rows_read,
        "rows_written": written,
        "duplicates_removed": duplicates,
        "quarantined": quarantined,
        "quarantined_total": sum(quarantined.values()),
        "rows_per_split": tally.kept,
        "positive_share_per_split": {
            name: (round(tally.positives[name] / n, 6) if n else None)
            for name, n in tally.kept.items()
        },
        "feature_contract_version": FEATURE_CONTRACT_VERSION,
        "feature_columns": list(FEATURE_COLUMNS),
        "output_dir": str(out),
        "features_path": str(out / FEATURES_DIR),
        "quarantine_path": str(out / QUARANTINE_DIR),
        "wall_seconds": round(time.perf_counter() - started, 3),
    }
    staged_stats = out / f"_tmp-{STATS_FILE}"
    staged_stats.write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n")
    os.replace(staged_stats, out / STATS_FILE)
    logger.info("wrote %d rows to %s in %.1f s", written, out / FEATURES_DIR, stats["wall_seconds"])
    return stats


def read_features(output_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The featurized rows of a finished run as pandas, sorted by review_id, dtypes enforced.

    Reads with pyarrow (no Spark), so training code can load the job's output anywhere.
    """
    path = Path(output_dir) / FEATURES_DIR
    if not path.is_dir():
        raise FileNotFoundError(
            f"no features at {path}; run `python -m jobs.spark.featurize --input RAW "
            f"--output {output_dir}` first"
        )
    frame = pd.read_parquet(path, engine="pyarrow")
    columns = [ROW_ID, RAW_TEXT, RAW_LABEL, SPLIT, *FEATURE_COLUMNS]
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; found {list(frame.columns)}")
    dtypes = {ROW_ID: "object", RAW_TEXT: "object", RAW_LABEL: "int64", SPLIT: "object"}
    frame = frame[columns].astype({**dtypes, **FEATURE_DTYPES})
    frame = frame.sort_values(ROW_ID, kind="stable").reset_index(drop=True)
    return training_frame_schema.validate(frame)


def _parse_label_map(value: str) -> dict[str, int]:
    try:
        mapping = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--label-map is not valid JSON: {exc}") from exc
    if not isinstance(mapping, dict):
        raise argparse.ArgumentTypeError('--label-map must be a JSON object like {"pos": 1}')
    return mapping


def _parse_fractions(value: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(part) for part in value.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--split-fractions: {exc}") from exc
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("--split-fractions takes three numbers: 0.8,0.1,0.1")
    return parts[0], parts[1], parts[2]


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 2 input or argument error)."""
    parser = argparse.ArgumentParser(
        prog="featurize", description="Raw reviews -> features Parquet + quarantine + stats."
    )
    parser.add_argument("--input", required=True, help="CSV, .csv.gz, JSONL or Parquet")
    parser.add_argument("--output", required=True, help="local output folder")
    parser.add_argument("--source", help="an entry of contracts/sources.yaml")
    parser.add_argument("--text-column", help=f"text column (default {RAW_TEXT})")
    parser.add_argument("--label-column", help=f"label column (default {RAW_LABEL})")
    parser.add_argument("--label-map", type=_parse_label_map, help='JSON, e.g. {"pos": 1}')
    parser.add_argument("--split-column", help="use this column's train/valid/test values")
    parser.add_argument(
        "--split-fractions", type=_parse_fractions, default=(0.8, 0.1, 0.1), help="0.8,0.1,0.1"
    )
    parser.add_argument("--master", help="Spark master (default: SPARK_MASTER or local[*])")
    args = parser.parse_args(argv)
    explicit = [args.text_column, args.label_column, args.label_map]
    if args.source and any(value is not None for value in explicit):
        parser.error("--source already names the columns and label map; drop the column flags")

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        _check_exists(args.input)
        input_format(args.input)
        owned = SparkSession.getActiveSession() is None
        spark = build_session("driftloop-featurize", args.master)
        try:
            stats = featurize(
                spark,
                args.input,
                args.output,
                source=args.source,
                text_column=args.text_column or RAW_TEXT,
                label_column=args.label_column or RAW_LABEL,
                label_map=args.label_map,
                split_column=args.split_column,
                split_fractions=args.split_fractions,
            )
        finally:
            if owned:
                spark.stop()
    except FeaturizeError as exc:
        print(f"featurize: error: {exc}", file=sys.stderr)
        return 2
    summary = {key: stats[key] for key in ("rows_read", "rows_written", "duplicates_removed")}
    print(json.dumps({**summary, "quarantined": stats["quarantined"], "output": args.output}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
