"""Reading a raw source into Spark: format by file name, CSV options, errors a user can act on."""

from __future__ import annotations

from pathlib import Path

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

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


def local_path(path: str) -> Path | None:
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
    local = local_path(path)
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


def check_exists(path: str) -> None:
    """InputNotFoundError when a local `path` is missing (remote paths are Spark's to check)."""
    local = local_path(path)
    if local is not None and not local.exists():
        raise InputNotFoundError(f"input not found: {path}")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (Spark's are pages long)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_raw(spark: SparkSession, path: str) -> tuple[DataFrame, str]:
    """The input as a Spark DataFrame and its format name."""
    check_exists(path)
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
        raise UnreadableInputError(f"could not read {path} as {fmt}: {first_line(exc)}") from exc
    except Py4JJavaError as exc:
        raise UnreadableInputError(f"could not read {path} as {fmt}: {first_line(exc)}") from exc
    return frame, fmt


def col(name: str) -> Column:
    """A column by its literal name, dots and all (`reviews.text`)."""
    return F.col("`" + name.replace("`", "``") + "`")
