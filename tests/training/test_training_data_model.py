"""Loading the feature folder and building the baseline pipeline (no MLflow)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.reviews import FEATURE_COLUMNS, build_features
from training.data import (
    FeatureDataError,
    feature_frame,
    folder_sha256,
    load_features,
    split_frames,
)
from training.models import (
    ModelParamsError,
    build_baseline,
    default_params,
    parse_param_overrides,
    resolve_params,
)

WriteFolder = Callable[..., Path]


def test_load_features_reads_a_spark_style_folder(features_dir: Path) -> None:
    frame = load_features(features_dir)
    assert len(frame) == 1500
    train, valid, test = split_frames(frame)
    assert (len(train), len(valid), len(test)) == (900, 300, 300)
    assert set(train["split"]) == {"train"} and set(test["split"]) == {"test"}
    assert list(feature_frame(frame).columns) == list(FEATURE_COLUMNS)


def test_partitioned_by_split_folder_loads(review_table: pd.DataFrame, tmp_path: Path) -> None:
    folder = tmp_path / "partitioned"
    review_table.to_parquet(folder, partition_cols=["split"], index=False)
    frame = load_features(folder)
    assert frame["split"].dtype == object
    assert sorted(frame["split"].unique()) == ["test", "train", "valid"]


def test_missing_and_empty_folders_name_the_path(tmp_path: Path, write_folder: WriteFolder) -> None:
    with pytest.raises(FeatureDataError, match=re.escape(f"{tmp_path / 'nope'} does not exist")):
        load_features(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "_SUCCESS").write_text("")
    with pytest.raises(FeatureDataError, match=re.escape(f"{empty} contains no")):
        load_features(empty)
    zero = write_folder(pd.DataFrame(), tmp_path / "zero", parts=1)
    with pytest.raises(FeatureDataError, match="has 0 rows"):
        load_features(zero)


def test_contract_violations_are_reported(
    review_table: pd.DataFrame, tmp_path: Path, write_folder: WriteFolder
) -> None:
    broken = review_table.copy()
    broken.loc[5, "label"] = 2
    folder = write_folder(broken, tmp_path / "broken")
    with pytest.raises(FeatureDataError, match=r"breaks the training contract[\s\S]*label"):
        load_features(folder)
    no_feature = write_folder(review_table.drop(columns=["n_words"]), tmp_path / "short")
    with pytest.raises(FeatureDataError, match=r"lacks columns \['n_words'\]"):
        load_features(no_feature)


def test_empty_split_is_refused(review_table: pd.DataFrame) -> None:
    with pytest.raises(FeatureDataError, match=r"\['valid'\] have no rows"):
        split_frames(review_table[review_table["split"] != "valid"])


def test_folder_hash_changes_with_content(
    review_table: pd.DataFrame, tmp_path: Path, write_folder: WriteFolder
) -> None:
    a = write_folder(review_table, tmp_path / "a")
    b = write_folder(review_table, tmp_path / "b")
    changed = review_table.copy()
    changed.loc[0, "label"] = 1 - changed.loc[0, "label"]
    c = write_folder(changed, tmp_path / "c")
    assert folder_sha256(a) == folder_sha256(b)
    assert folder_sha256(a) != folder_sha256(c)


def test_param_overrides_are_validated() -> None:
    assert resolve_params({"C": 8})["C"] == 8
    assert resolve_params()["C"] == default_params()["C"]
    with pytest.raises(ModelParamsError, match=r"unknown baseline parameters \['c'\]"):
        resolve_params({"c": 8})
    with pytest.raises(ModelParamsError, match="solver must be one of"):
        resolve_params({"solver": "lbfgs"})
    assert parse_param_overrides(["C=0.5", "use_numeric=false", "class_weight=balanced"]) == {
        "C": 0.5,
        "use_numeric": False,
        "class_weight": "balanced",
    }
    with pytest.raises(ModelParamsError, match="NAME=VALUE"):
        parse_param_overrides(["C"])


def test_pipeline_vectorises_the_text_not_the_column_names(review_table: pd.DataFrame) -> None:
    train, _, _ = split_frames(review_table)
    model = build_baseline().fit(train, train["label"])  # extra columns must be ignored
    vocabulary = model.named_steps["features"].named_transformers_["text"].vocabulary_
    assert len(vocabulary) > 100
    assert "film" in vocabulary and "not terrible" in vocabulary
    assert "text_clean" not in vocabulary
    n_inputs = model.named_steps["classifier"].coef_.shape[1]
    assert n_inputs == len(vocabulary) + len(FEATURE_COLUMNS) - 1

    text_only = build_baseline({"use_numeric": False}).fit(train, train["label"])
    assert text_only.named_steps["classifier"].coef_.shape[1] == len(vocabulary)


def test_model_learns_the_direction_of_sentiment(review_table: pd.DataFrame) -> None:
    train, _, _ = split_frames(review_table)
    model = build_baseline().fit(feature_frame(train), train["label"])
    reviews = pd.DataFrame(
        {"text": ["The film was wonderful, a masterpiece.", "The film was awful, a total bore."]}
    )
    proba = model.predict_proba(build_features(reviews))[:, 1]
    assert proba[0] > 0.5 > proba[1]


def test_fit_is_deterministic(review_table: pd.DataFrame) -> None:
    train, valid, _ = split_frames(review_table)
    first = build_baseline().fit(feature_frame(train), train["label"])
    second = build_baseline().fit(feature_frame(train), train["label"])
    np.testing.assert_array_equal(
        first.predict_proba(feature_frame(valid)), second.predict_proba(feature_frame(valid))
    )
