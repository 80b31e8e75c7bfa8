"""What happens to each raw row: label and split mapping, row checks, duplicates, the tally.

One row in, one outcome out: `kept`, `duplicate`, or a quarantine reason. The row id and the
hash split depend only on the row's raw values, so reruns on any number of partitions agree.
Text use cases check their one text column with Spark expressions (empty, too long); tabular
use cases check each row with the contract's `PredictRequest` in `mapInPandas`, the model the
API validates requests with, so a row the API would answer with 422 is a quarantined row here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from contracts.sources import load_sources, source_columns, source_use_case
from core.usecases import UseCase
from jobs.spark.feature_batches import DETAIL_COLUMN, REASON_COLUMN, make_row_checks
from jobs.spark.raw_input import ConfigurationError, col

SPLIT = "split"
SPLITS = ("train", "valid", "test")

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

# monotonically_increasing_id() keeps the partition index above bit 33.
ROW_BITS = 33
KEPT = "kept"
# Ingestion's accepted rows name the source each row came from; the job keeps that column (as
# text) next to the features, so the promotion gate can compare models per source.
SOURCE_COLUMN = "source"
DUPLICATE = "duplicate"
_ROW_KEY_SEPARATOR = "\x1f"
_NULL_MARK = "\x00"


class Reason(StrEnum):
    """Why a row was quarantined, in the order the checks run."""

    EMPTY_TEXT = "empty_text"
    TEXT_TOO_LONG = "text_too_long"
    CONTRACT_VIOLATION = "contract_violation"
    LABEL_UNMAPPED = "label_unmapped"
    SPLIT_UNMAPPED = "split_unmapped"
    CONFLICTING_LABELS = "conflicting_labels"


TEXT_ONLY = frozenset({Reason.EMPTY_TEXT, Reason.TEXT_TOO_LONG})


def reasons_for(kind: str) -> list[Reason]:
    """The reasons a use case of `kind` can quarantine a row for, in check order."""
    if kind == "text":
        return [r for r in Reason if r is not Reason.CONTRACT_VIOLATION]
    return [r for r in Reason if r not in TEXT_ONLY]


@dataclass(frozen=True)
class SourceSpec:
    """How to read one raw source: {canonical raw column: file column}, label column and map."""

    columns: dict[str, str]
    label_column: str
    label_map: dict[str, int]

    @property
    def text_column(self) -> str | None:
        """The file column of a one-column (text) use case, else None."""
        return next(iter(self.columns.values())) if len(self.columns) == 1 else None


def canonical_label_map(use_case: UseCase) -> dict[str, int]:
    """ "0"/"1" and the label names -> 0/1, from the contract's LABEL_NAMES."""
    names = use_case.contract.LABEL_NAMES
    return {**{str(code): code for code in names}, **{name: code for code, name in names.items()}}


def resolve_source(
    use_case: UseCase,
    source: str | None,
    columns: Mapping[str, str] | None = None,
    label_column: str | None = None,
    label_map: Mapping[str, int] | None = None,
) -> SourceSpec:
    """The columns and label map of `source` (from sources.yaml), else the explicit ones."""
    contract = use_case.contract
    raw_columns = tuple(contract.RAW_COLUMNS)
    label_column = label_column or contract.RAW_LABEL
    if source is not None:
        sources = load_sources()
        if source not in sources:
            raise ConfigurationError(
                f"unknown source {source!r}; contracts/sources.yaml defines {sorted(sources)}"
            )
        entry = sources[source]
        if source_use_case(entry) != use_case.name:
            raise ConfigurationError(
                f"source {source!r} feeds use case {source_use_case(entry)!r}, "
                f"not {use_case.name!r}"
            )
        if columns or label_column != contract.RAW_LABEL or label_map is not None:
            raise ConfigurationError(
                f"source {source!r} already names its columns and label map; "
                "pass either a source or explicit columns, not both"
            )
        mapping = source_columns(entry, raw_columns)
        label_column, label_map = entry["label_column"], entry["label_map"]
    else:
        unknown = sorted(set(columns or {}) - set(raw_columns))
        if unknown:
            raise ConfigurationError(
                f"{unknown} are not raw columns of use case {use_case.name!r}: {raw_columns}"
            )
        mapping = {name: (columns or {}).get(name, name) for name in raw_columns}
    labels = {str(k): v for k, v in (label_map or canonical_label_map(use_case)).items()}
    allowed = sorted(contract.LABEL_NAMES)
    bad = {key: value for key, value in labels.items() if value not in allowed}
    if bad or not labels:
        raise ConfigurationError(
            f"label map must send raw values to {allowed}; got {bad or labels}"
        )
    return SourceSpec(mapping, str(label_column), {k: int(v) for k, v in labels.items()})


def literal_map(mapping: Mapping[str, Any], value_type: str) -> Column:
    """A Spark map literal (`create_map`) with values cast to `value_type`."""
    pairs: list[Column] = []
    for key, value in mapping.items():
        pairs += [F.lit(key), F.lit(value).cast(value_type)]
    return F.create_map(*pairs)


def _strip(column: Column) -> Column:
    # Unicode whitespace at both ends, like str.strip() in contracts.sources.map_label.
    return F.regexp_replace(column, r"(?U)^\s+|\s+$", "")


def _row_digest(raw_columns: Sequence[str]) -> Column:
    # One raw column (text): the sha256 of the value itself, so ids never change with the
    # registry. Several: of the values joined with a unit separator, nulls marked.
    if len(raw_columns) == 1:
        return F.sha2(F.col(raw_columns[0]), 256)
    parts = [F.coalesce(F.col(name), F.lit(_NULL_MARK)) for name in raw_columns]
    return F.sha2(F.concat_ws(_ROW_KEY_SEPARATOR, *parts), 256)


def _row_checks(rows: DataFrame, use_case: UseCase) -> DataFrame:
    """`rows` plus `_reason` / `_detail` from the use case's own row checks."""
    contract = use_case.contract
    raw_columns = list(contract.RAW_COLUMNS)
    if use_case.kind == "text":
        text = F.col(raw_columns[0])
        empty = text.isNull() | text.rlike(r"(?U)\A\s*\z")
        reason = F.when(empty, Reason.EMPTY_TEXT.value)
        max_chars = getattr(contract, "MAX_TEXT_CHARS", None)
        if max_chars is not None:
            reason = reason.when(F.length(text) > int(max_chars), Reason.TEXT_TOO_LONG.value)
        return rows.withColumn(REASON_COLUMN, reason).withColumn(
            DETAIL_COLUMN, F.lit(None).cast("string")
        )
    schema = StructType(
        [
            *rows.schema.fields,
            StructField(REASON_COLUMN, StringType(), True),
            StructField(DETAIL_COLUMN, StringType(), True),
        ]
    )
    return rows.mapInPandas(make_row_checks(use_case.contract_module, raw_columns), schema=schema)


def classify(
    raw: DataFrame,
    use_case: UseCase,
    spec: SourceSpec,
    split_column: str | None,
    fractions: tuple[float, float, float],
) -> DataFrame:
    """One row per input row with its label, id, split and outcome (a reason, duplicate, kept)."""
    contract = use_case.contract
    raw_columns = list(contract.RAW_COLUMNS)
    row_id, raw_label_col = contract.ROW_ID, contract.RAW_LABEL
    labels = literal_map(spec.label_map, "long")
    raw_label = _strip(F.col("raw_label"))
    digest = _row_digest(raw_columns)
    # 32 hash bits after the id's 64 -> a uniform number in [0, 1) only the raw values decide.
    bucket = F.conv(F.substring(digest, 17, 8), 16, 10).cast("long") / float(1 << 32)

    train, valid, _ = fractions
    if split_column is None:
        split = (
            F.when(bucket < train, "train").when(bucket < train + valid, "valid").otherwise("test")
        )
        carve = F.lit(None).cast("boolean")
    else:
        split = F.try_element_at(
            literal_map(SPLIT_ALIASES, "string"), F.lower(_strip(F.col("raw_split")))
        )
        # Used only when the column holds no valid rows: this train share moves to valid.
        carve = bucket < (valid / (train + valid))

    keep_source = SOURCE_COLUMN in raw.columns and SOURCE_COLUMN not in raw_columns
    rows = raw.select(
        F.monotonically_increasing_id().alias("_mid"),
        *[col(spec.columns[name]).cast("string").alias(name) for name in raw_columns],
        *([col(SOURCE_COLUMN).cast("string").alias(SOURCE_COLUMN)] if keep_source else []),
        col(spec.label_column).cast("string").alias("raw_label"),
        (col(split_column).cast("string") if split_column else F.lit(None).cast("string")).alias(
            "raw_split"
        ),
    ).select(
        "*",
        F.substring(digest, 1, 16).alias(row_id),
        F.coalesce(
            F.try_element_at(labels, raw_label), F.try_element_at(labels, F.lower(raw_label))
        ).alias(raw_label_col),
        split.alias("_split"),
        carve.alias("_carve"),
    )
    rows = _row_checks(rows, use_case)
    reason = F.coalesce(
        F.col(REASON_COLUMN),
        F.when(F.col(raw_label_col).isNull(), Reason.LABEL_UNMAPPED.value).when(
            F.col("_split").isNull(), Reason.SPLIT_UNMAPPED.value
        ),
    )
    rows = rows.withColumn(REASON_COLUMN, reason)

    # Copies of one row are compared only among rows that passed the row checks.
    group = Window.partitionBy(row_id, F.col(REASON_COLUMN).isNull())
    conflicting = F.min(raw_label_col).over(group) != F.max(raw_label_col).over(group)
    rank = F.row_number().over(group.orderBy("_mid"))
    outcome = F.coalesce(
        F.col(REASON_COLUMN),
        F.when(conflicting, Reason.CONFLICTING_LABELS.value)
        .when(rank > 1, DUPLICATE)
        .otherwise(KEPT),
    )
    return rows.withColumn("outcome", outcome).drop(REASON_COLUMN)


@dataclass
class Tally:
    """Counts of one run: rows per partition (for source_row), outcomes, kept rows per split."""

    rows_read: int
    offsets: dict[int, int]
    outcomes: dict[str, int]
    kept: dict[str, int]
    positives: dict[str, int]
    carve_valid: bool


def tally(classified: DataFrame, split_column: str | None, label_column: str) -> Tally:
    """Every count the stats need, from one aggregate over the classified rows."""
    grouped = (
        classified.groupBy(
            F.shiftright("_mid", ROW_BITS).alias("part"), "outcome", "_split", "_carve"
        )
        .agg(F.count(F.lit(1)).alias("n"), F.sum(label_column).alias("positives"))
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
        if row["outcome"] != KEPT:
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
    return Tally(running, offsets, outcomes, kept, positives, carve_valid)
