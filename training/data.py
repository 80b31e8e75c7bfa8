"""Read the feature table the Spark job wrote and cut it into model inputs.

The featurize job writes one Parquet folder per pipeline run with the raw
columns (row id, raw columns, `label`, `split`) next to the use case's
`FEATURE_COLUMNS`. Every function takes the use case by name (default
`reviews`) and reads its columns and schema from the registry.
Training reads it with pandas only (no Spark), validates it against the
training contract before anything is fitted, and hands the model exactly the
columns serving will compute: `feature_frame` is the one definition of "model
input" shared by training, evaluation and the gate.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pandera.errors

from core.usecases import DEFAULT_USE_CASE, get_use_case

SPLIT = "split"
SPLITS = ("train", "valid", "test")


class FeatureDataError(ValueError):
    """The feature folder is missing, empty or breaks the training contract."""


def _parquet_files(folder: Path) -> list[Path]:
    # Spark also writes _SUCCESS / .crc side files; pyarrow skips them, so must we.
    return sorted(
        p
        for p in folder.rglob("*.parquet")
        if p.is_file()
        and not any(part.startswith(("_", ".")) for part in p.relative_to(folder).parts)
    )


def load_features(features_dir: str | Path, use_case: str = DEFAULT_USE_CASE) -> pd.DataFrame:
    """The validated training frame in `features_dir` (a Parquet folder or file).

    Raises FeatureDataError naming the folder when it is missing, holds no
    Parquet rows, or fails the use case's `training_frame_schema`.
    """
    uc = get_use_case(use_case)
    contract, feature_columns = uc.contract, uc.features.FEATURE_COLUMNS
    path = Path(features_dir)
    if not path.exists():
        raise FeatureDataError(
            f"feature folder {path} does not exist; run the featurize job first "
            "(jobs/spark/featurize.py writes <run_dir>/features/)"
        )
    if path.is_dir() and not _parquet_files(path):
        raise FeatureDataError(f"feature folder {path} contains no *.parquet files")
    frame = pd.read_parquet(path)
    if frame.empty:
        raise FeatureDataError(f"feature folder {path} has 0 rows")
    if SPLIT in frame.columns and isinstance(frame[SPLIT].dtype, pd.CategoricalDtype):
        # A folder partitioned by split (split=train/...) comes back categorical.
        frame[SPLIT] = frame[SPLIT].astype(str)
    missing = [c for c in (*feature_columns, contract.RAW_LABEL, SPLIT) if c not in frame.columns]
    if missing:
        raise FeatureDataError(
            f"feature folder {path} lacks columns {missing}; found {list(frame.columns)}"
        )
    try:
        contract.training_frame_schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        summary = exc.failure_cases[["column", "check", "failure_case"]].head(10)
        raise FeatureDataError(
            f"feature folder {path} breaks the training contract "
            f"({len(exc.failure_cases)} failures); first ones:\n{summary.to_string(index=False)}"
        ) from exc
    return frame.reset_index(drop=True)


def split_frames(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, valid, test) by the `split` column; every split must have rows."""
    parts = tuple(df[df[SPLIT] == name].reset_index(drop=True) for name in SPLITS)
    empty = [name for name, part in zip(SPLITS, parts, strict=True) if part.empty]
    if empty:
        counts = df[SPLIT].value_counts().to_dict()
        raise FeatureDataError(f"splits {empty} have no rows (split counts: {counts})")
    train, valid, test = parts
    return train, valid, test


def feature_frame(df: pd.DataFrame, use_case: str = DEFAULT_USE_CASE) -> pd.DataFrame:
    """The model input: the use case's FEATURE_COLUMNS in contract order, nothing else."""
    FEATURE_COLUMNS = get_use_case(use_case).features.FEATURE_COLUMNS
    missing = [c for c in FEATURE_COLUMNS if c not in df.columns]
    if missing:
        raise FeatureDataError(f"frame lacks feature columns {missing}; found {list(df.columns)}")
    return df.loc[:, list(FEATURE_COLUMNS)]


def labels(df: pd.DataFrame, use_case: str = DEFAULT_USE_CASE) -> pd.Series:
    """The 0/1 target as int64."""
    return df[get_use_case(use_case).contract.RAW_LABEL].astype("int64")


def folder_sha256(features_dir: str | Path) -> str:
    """sha256 over the Parquet files of a folder (relative name + bytes, sorted).

    Used as the data lineage hash when the caller has no ingest snapshot hash:
    it identifies exactly the bytes the model was trained on.
    """
    path = Path(features_dir)
    files = [path] if path.is_file() else _parquet_files(path)
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
