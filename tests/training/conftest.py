"""Feature folders shaped like the featurize job's output, built without Spark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from contracts.reviews import RAW_LABEL, RAW_TEXT, ROW_ID, SPLIT
from features.reviews import build_features
from synthetic.reviews import generate_reviews

SPLIT_CYCLE = np.array(["train", "train", "train", "valid", "test"])


def feature_table(raw: pd.DataFrame) -> pd.DataFrame:
    """review_id, text, label, split + FEATURE_COLUMNS; split = row number mod 5 (3:1:1)."""
    ids = pd.Series([f"r{i:06d}" for i in range(len(raw))], index=raw.index)
    frame = pd.concat(
        [
            pd.DataFrame({ROW_ID: ids, RAW_TEXT: raw[RAW_TEXT], RAW_LABEL: raw[RAW_LABEL]}),
            build_features(raw),
        ],
        axis=1,
    )
    frame.insert(3, SPLIT, SPLIT_CYCLE[np.arange(len(frame)) % len(SPLIT_CYCLE)])
    return frame.reset_index(drop=True)


def write_feature_folder(frame: pd.DataFrame, folder: Path, parts: int = 2) -> Path:
    """Write `frame` as a folder of Parquet part files, like Spark does."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, chunk in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[chunk].to_parquet(folder / f"part-{i:05d}.parquet", index=False)
    (folder / "_SUCCESS").write_text("")
    return folder


@pytest.fixture(scope="session")
def review_table() -> pd.DataFrame:
    """1500 synthetic movie reviews as a training feature table."""
    return feature_table(generate_reviews(1500, seed=7))


@pytest.fixture(scope="session")
def features_dir(review_table: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_feature_folder(review_table, tmp_path_factory.mktemp("features") / "features")


@pytest.fixture(scope="session")
def write_folder():
    """The folder writer, for tests that need a variant of the feature table on disk."""
    return write_feature_folder
