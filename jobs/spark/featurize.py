"""Raw rows of a use case -> training-ready Parquet: check, de-duplicate, map labels, split, featurize.

The features are computed by the use case's `build_features` (looked up by name in
`core.usecases`) inside `mapInPandas`: the very function the API calls online, so training and
serving cannot disagree about a feature. Reading the input lives in `raw_input`, what happens to
each row (checks, duplicates, split) in `row_outcomes`, the worker-side code in `feature_batches`.

What a run guarantees:
- every input row is accounted for: written, removed as an exact duplicate, or quarantined with
  a reason code (`rows_read == rows_written + duplicates_removed + quarantined_total`);
- the row id (`review_id` for reviews: first 16 hex of the sha256 of the raw text; of the raw
  values joined for a use case with several raw columns) and the hash split depend only on the
  raw values, so reruns on any number of partitions give the same ids and splits, and copies of
  one row never straddle splits;
- outputs are written to a temporary folder and renamed into place, so a failed run never leaves
  a half-written `features/` where the next step reads.

Layout of `<output_dir>`: `features/` (Parquet: row id, raw columns, label, split, then
FEATURE_COLUMNS), `quarantine/` (Parquet: source_row, row id, raw columns, raw_label, raw_split,
reason; tabular use cases add `detail`, the PredictRequest error) and `stats.json`. `source_row` is the 0-based position of the record as Spark reads the
input (file order for a single file). Row checks run first (text: empty_text, text_too_long;
tabular: contract_violation; then label_unmapped, split_unmapped); copies of one text are compared among the rows that pass them:
all copies are quarantined when their labels disagree, otherwise the first one read is kept.
The output folder is local; the input may be any path Spark reads.

Run it in-process (`featurize(spark, ...)`), as a module
(`python -m jobs.spark.featurize --input PATH --output DIR --source imdb`) or with spark-submit:

    PYSPARK_PYTHON=$PWD/.venv/bin/python .venv/bin/spark-submit jobs/spark/featurize.py \\
        --input data.csv.gz --output out/ --source imdb

(`--conf spark.pyspark.python=... --conf spark.pyspark.driver.python=...` works as well). On a
cluster, ship `features/`, `contracts/`, `core/` and `jobs/` with `--py-files`. A use case
registered from an extra folder (DRIFTLOOP_USECASES) has its single-file modules shipped to the
workers with `addPyFile`.
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
from collections.abc import Sequence
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
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from core.usecases import DEFAULT_USE_CASE, REPO_ROOT, UseCase, get_use_case, use_case_names
from jobs.spark.feature_batches import DETAIL_COLUMN, make_feature_batches, output_schema
from jobs.spark.raw_input import (  # noqa: F401  (re-exported: the job's errors)
    ConfigurationError,
    FeaturizeError,
    InputNotFoundError,
    MissingColumnsError,
    UnreadableInputError,
    UnsupportedInputError,
    check_exists,
    first_line,
    input_format,
    local_path,
    read_raw,
)
from jobs.spark.row_outcomes import (  # noqa: F401
    DUPLICATE,
    KEPT,
    ROW_BITS,
    SOURCE_COLUMN,
    SPLIT,
    SPLIT_ALIASES,
    Reason,
    SourceSpec,
    classify,
    literal_map,
    reasons_for,
    resolve_source,
    tally,
)
from jobs.spark.session import build_session

logger = logging.getLogger("jobs.spark.featurize")

FEATURES_DIR = "features"
QUARANTINE_DIR = "quarantine"
STATS_FILE = "stats.json"


def _swap_into_place(staged: Path, final: Path) -> None:
    """Replace `final` by `staged` with renames only, so readers never see a partial folder."""
    retired = final.with_name(f"_old-{final.name}-{uuid.uuid4().hex[:8]}")
    if final.exists():
        os.replace(final, retired)
    os.replace(staged, final)
    shutil.rmtree(retired, ignore_errors=True)


def _output_dir(output_dir: str | os.PathLike[str]) -> Path:
    local = local_path(os.fspath(output_dir))
    if local is None:
        raise ConfigurationError(
            f"output must be a local folder (it is renamed into place); got {output_dir}"
        )
    return local.resolve()


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(x) for x in fractions)
    if len(values) != 3 or min(values) < 0 or values[0] <= 0 or abs(sum(values) - 1.0) > 1e-6:
        raise ConfigurationError(
            "split_fractions must be three non-negative numbers (train, valid, test) "
            f"summing to 1 with train > 0; got {fractions}"
        )
    return values[0], values[1], values[2]


def ship_use_case_modules(spark: SparkSession, use_case: UseCase) -> list[str]:
    """addPyFile the use case's modules that live outside the repository (extra registries).

    Spark's Python workers start with the JVM's environment, which may predate the registry's
    extra folder on PYTHONPATH; a shipped file is importable in every worker. Returns the files.
    """
    shipped = []
    for name in (use_case.feature_module, use_case.contract_module):
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin) if spec is not None and spec.origin else None
        if origin is None or origin.is_relative_to(REPO_ROOT):
            continue
        if origin.name == "__init__.py":
            raise ConfigurationError(
                f"use case {use_case.name!r}: module {name!r} is a package outside the "
                "repository; ship it to the workers with --py-files"
            )
        spark.sparkContext.addPyFile(str(origin))
        shipped.append(str(origin))
    return shipped


def featurize(
    spark: SparkSession,
    input_path: str,
    output_dir: str,
    *,
    source: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    label_map: dict[str, int] | None = None,
    split_column: str | None = None,
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    use_case: str = DEFAULT_USE_CASE,
    columns: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Turn the raw source at `input_path` into `<output_dir>/features/`; return the stats.

    `use_case` names a registered use case (its raw columns, checks, label names, features).
    `source` names an entry of contracts/sources.yaml (its columns and label map); otherwise
    `columns` ({canonical raw column: file column}; `text_column` is the shorthand for a text
    use case), `label_column` and `label_map` (default: 0/1 and the label names) apply.
    Without `split_column` each row goes to train/valid/test by its hash with
    `split_fractions`; with it, the column's values are used, and when they hold no `valid`
    rows a `valid / (train + valid)` share of train is moved to valid by hash.
    """
    started = time.perf_counter()
    uc = get_use_case(use_case)
    contract, feats = uc.contract, uc.features
    raw_columns = list(contract.RAW_COLUMNS)
    row_id, label = contract.ROW_ID, contract.RAW_LABEL
    input_path = os.fspath(input_path)
    if text_column is not None:
        if len(raw_columns) != 1:
            raise ConfigurationError(
                f"text_column applies to one-column use cases; {use_case!r} has {raw_columns}"
            )
        columns = {**(columns or {}), raw_columns[0]: text_column}
    spec = resolve_source(uc, source, columns, label_column, label_map)
    fractions = _check_fractions(split_fractions)
    out = _output_dir(output_dir)

    raw, fmt = read_raw(spark, input_path)
    needed = {**{f"raw {name}": spec.columns[name] for name in raw_columns}}
    needed["label"] = spec.label_column
    if split_column is not None:
        needed["split"] = split_column
    missing = {role: name for role, name in needed.items() if name not in raw.columns}
    if missing:
        names = ", ".join(f"{name!r} ({role})" for role, name in missing.items())
        raise MissingColumnsError(
            f"{input_path}: missing column(s) {names}; columns found: {raw.columns}"
        )
    logger.info("reading %s (%s) for use case %s: columns %s", input_path, fmt, use_case, needed)
    ship_use_case_modules(spark, uc)

    classified = classify(raw, uc, spec, split_column, fractions).persist()
    try:
        try:
            counts = tally(classified, split_column, label)
        except (PySparkException, Py4JJavaError) as exc:
            raise UnreadableInputError(
                f"could not read {input_path} as {fmt}: {first_line(exc)}"
            ) from exc
        quarantined = {r.value: counts.outcomes.get(r.value, 0) for r in reasons_for(uc.kind)}
        duplicates = counts.outcomes.get(DUPLICATE, 0)
        written = counts.outcomes.get(KEPT, 0)
        logger.info("read %d rows", counts.rows_read)
        logger.info("quarantined %d rows: %s", sum(quarantined.values()), quarantined)
        logger.info("removed %d exact duplicates", duplicates)
        if counts.rows_read != written + duplicates + sum(quarantined.values()):
            raise RuntimeError(f"row accounting does not add up: {counts}")

        # A literal map needs at least one entry to have a type, even for an empty input.
        offsets = literal_map({str(k): v for k, v in counts.offsets.items()} or {"0": 0}, "long")
        part = F.shiftright("_mid", ROW_BITS).cast("string")
        source_row = F.try_element_at(offsets, part) + F.col("_mid").bitwiseAND((1 << ROW_BITS) - 1)
        split = F.col("_split")
        if counts.carve_valid:
            split = F.when((split == "train") & F.col("_carve"), "valid").otherwise(split)

        details = [F.col(DETAIL_COLUMN).alias("detail")] if uc.kind != "text" else []
        quarantine = classified.filter(~F.col("outcome").isin(KEPT, DUPLICATE)).select(
            source_row.alias("source_row"),
            row_id,
            *raw_columns,
            "raw_label",
            "raw_split",
            F.col("outcome").alias("reason"),
            *details,
        )
        # A raw column that is also a feature (an age used as is) is written once: the feature.
        passthrough = [c for c in raw_columns if c not in set(feats.FEATURE_COLUMNS)]
        # The input's `source` column, when it has one (ingestion's accepted rows do).
        origin = (
            [SOURCE_COLUMN] if SOURCE_COLUMN in set(classified.columns) - set(raw_columns) else []
        )
        keep = [row_id, *passthrough, *origin, label, SPLIT]
        kept = classified.filter(F.col("outcome") == KEPT).select(
            row_id, *raw_columns, *origin, label, split.alias(SPLIT)
        )
        batches = make_feature_batches(
            keep,
            uc.feature_module,
            raw_columns,
            contract_module=uc.contract_module if uc.kind != "text" else None,
        )
        schema = output_schema(kept.schema, keep, feats.FEATURE_COLUMNS, feats.FEATURE_DTYPES)
        features = kept.mapInPandas(batches, schema=schema)

        out.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex[:8]
        staged_features = out / f"_tmp-{FEATURES_DIR}-{token}"
        staged_quarantine = out / f"_tmp-{QUARANTINE_DIR}-{token}"
        try:
            features.write.parquet(str(staged_features))
            logger.info("computed features for %d rows: %s", written, counts.kept)
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
        "use_case": use_case,
        "source": source,
        "text_column": spec.text_column if uc.kind == "text" else None,
        "columns": spec.columns,
        "label_column": spec.label_column,
        "label_map": spec.label_map,
        "split_column": split_column,
        "split_method": (
            "hash"
            if split_column is None
            else "column+valid_carved_from_train"
            if counts.carve_valid
            else "column"
        ),
        "split_fractions": list(fractions),
        "rows_read": counts.rows_read,
        "rows_written": written,
        "duplicates_removed": duplicates,
        "quarantined": quarantined,
        "quarantined_total": sum(quarantined.values()),
        "rows_per_split": counts.kept,
        "positive_share_per_split": {
            name: (round(counts.positives[name] / n, 6) if n else None)
            for name, n in counts.kept.items()
        },
        "feature_contract_version": contract.FEATURE_CONTRACT_VERSION,
        "feature_columns": list(feats.FEATURE_COLUMNS),
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


def read_features(
    output_dir: str | os.PathLike[str], use_case: str = DEFAULT_USE_CASE
) -> pd.DataFrame:
    """The featurized rows of a finished run as pandas, sorted by row id, dtypes enforced.

    Reads with pyarrow (no Spark), so training code can load the job's output anywhere.
    """
    uc = get_use_case(use_case)
    contract, feats = uc.contract, uc.features
    row_id, label = contract.ROW_ID, contract.RAW_LABEL
    path = Path(output_dir) / FEATURES_DIR
    if not path.is_dir():
        raise FileNotFoundError(
            f"no features at {path}; run `python -m jobs.spark.featurize --input RAW "
            f"--output {output_dir}` first"
        )
    frame = pd.read_parquet(path, engine="pyarrow")
    passthrough = [c for c in contract.RAW_COLUMNS if c not in set(feats.FEATURE_COLUMNS)]
    origin = [SOURCE_COLUMN] if SOURCE_COLUMN in set(frame.columns) - set(passthrough) else []
    columns = [row_id, *passthrough, *origin, label, SPLIT, *feats.FEATURE_COLUMNS]
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; found {list(frame.columns)}")
    dtypes = {
        row_id: "object",
        **dict.fromkeys([*passthrough, *origin], "object"),
        label: "int64",
        SPLIT: "object",
    }
    frame = frame[columns].astype({**dtypes, **feats.FEATURE_DTYPES})
    frame = frame.sort_values(row_id, kind="stable").reset_index(drop=True)
    return contract.training_frame_schema.validate(frame)


def _parse_json_object(flag: str, value: str) -> dict[str, Any]:
    try:
        mapping = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"{flag} is not valid JSON: {exc}") from exc
    if not isinstance(mapping, dict):
        raise argparse.ArgumentTypeError(f'{flag} must be a JSON object like {{"pos": 1}}')
    return mapping


def _parse_label_map(value: str) -> dict[str, Any]:
    return _parse_json_object("--label-map", value)


def _parse_columns(value: str) -> dict[str, Any]:
    return _parse_json_object("--columns", value)


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
        prog="featurize", description="Raw rows -> features Parquet + quarantine + stats."
    )
    parser.add_argument("--input", required=True, help="CSV, .csv.gz, JSONL or Parquet")
    parser.add_argument("--output", required=True, help="local output folder")
    parser.add_argument("--use-case", default=DEFAULT_USE_CASE, help=f"one of {use_case_names()}")
    parser.add_argument("--source", help="an entry of contracts/sources.yaml")
    parser.add_argument("--text-column", help="text column of a text use case (default text)")
    parser.add_argument("--columns", type=_parse_columns, help='JSON {"raw column": "file column"}')
    parser.add_argument("--label-column", help="label column (default label)")
    parser.add_argument("--label-map", type=_parse_label_map, help='JSON, e.g. {"pos": 1}')
    parser.add_argument("--split-column", help="use this column's train/valid/test values")
    parser.add_argument(
        "--split-fractions", type=_parse_fractions, default=(0.8, 0.1, 0.1), help="0.8,0.1,0.1"
    )
    parser.add_argument("--master", help="Spark master (default: SPARK_MASTER or local[*])")
    args = parser.parse_args(argv)
    explicit = [args.text_column, args.columns, args.label_column, args.label_map]
    if args.source and any(value is not None for value in explicit):
        parser.error("--source already names the columns and label map; drop the column flags")

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        check_exists(args.input)
        input_format(args.input)
        owned = SparkSession.getActiveSession() is None
        spark = build_session("driftloop-featurize", args.master)
        try:
            stats = featurize(
                spark,
                args.input,
                args.output,
                source=args.source,
                text_column=args.text_column,
                columns=args.columns,
                label_column=args.label_column,
                label_map=args.label_map,
                split_column=args.split_column,
                split_fractions=args.split_fractions,
                use_case=args.use_case,
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
