"""The feature job on the real review files in ../shared/datasets (skipped when absent)."""

from __future__ import annotations

import hashlib
import math

import pandas as pd
import pytest

from contracts.reviews import MAX_TEXT_CHARS, load_sources, map_label
from features.reviews import FEATURE_COLUMNS, FEATURE_DTYPES, build_features
from jobs.spark.featurize import featurize, read_features
from tests.conftest import real_dataset

pytestmark = [pytest.mark.spark, pytest.mark.realdata]


def review_id(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def test_imdb_sample_through_the_imdb_source(spark, tmp_path) -> None:
    sample = pd.read_csv(real_dataset("imdb_50k.csv.gz"), nrows=2000)
    sample.to_csv(tmp_path / "imdb_head.csv", index=False)
    stats = featurize(spark, str(tmp_path / "imdb_head.csv"), str(tmp_path / "out"), source="imdb")

    unique = sample.drop_duplicates("review")
    assert stats["rows_read"] == 2000
    assert stats["quarantined_total"] == 0
    assert stats["duplicates_removed"] == 2000 - len(unique)
    assert stats["rows_written"] == len(unique)

    got = read_features(tmp_path / "out").set_index("review_id")
    expected = pd.concat([unique.reset_index(drop=True), build_features(unique, "review")], axis=1)
    expected.index = [review_id(t) for t in expected["review"]]
    got = got.loc[expected.index]
    assert got["text"].tolist() == expected["review"].tolist()
    assert got["label"].tolist() == (expected["sentiment"] == "positive").astype(int).tolist()
    for name in FEATURE_COLUMNS:
        if FEATURE_DTYPES[name] == "float64":
            assert all(
                math.isclose(a, b, rel_tol=0, abs_tol=1e-12)
                for a, b in zip(got[name], expected[name], strict=True)
            ), name
        else:
            assert got[name].tolist() == expected[name].tolist(), name
    assert 0.4 < got["label"].mean() < 0.6


@pytest.mark.slow
def test_amazon_multiline_csv_reads_every_record(spark, tmp_path) -> None:
    path = real_dataset("amazon_product_reviews_datafiniti_34660.csv.gz")
    source = load_sources()["amazon"]
    frame = pd.read_csv(path, low_memory=False)
    assert len(frame) == 34_660

    stats = featurize(spark, str(path), str(tmp_path / "out"), source="amazon")
    assert stats["rows_read"] == len(frame)

    text = frame[source["text_column"]]
    labels = frame[source["label_column"]].map(lambda v: map_label(v, source["label_map"]))
    empty = text.isna() | text.fillna("").str.strip().eq("")
    too_long = ~empty & text.fillna("").str.len().gt(MAX_TEXT_CHARS)
    unmapped = ~empty & ~too_long & labels.isna()
    valid = frame[~(empty | too_long | unmapped)].assign(y=labels)
    per_text = valid.groupby(source["text_column"])["y"].nunique()
    conflicting = valid[source["text_column"]].map(per_text).gt(1)
    kept = valid[~conflicting].drop_duplicates(source["text_column"])

    assert stats["quarantined"] == {
        "empty_text": int(empty.sum()),
        "text_too_long": int(too_long.sum()),
        "label_unmapped": int(unmapped.sum()),
        "split_unmapped": 0,
        "conflicting_labels": int(conflicting.sum()),
    }
    assert stats["rows_written"] == len(kept)
    got = read_features(tmp_path / "out")
    assert set(got["review_id"]) == {review_id(t) for t in kept[source["text_column"]]}
    by_id = dict(zip(got["review_id"], got["label"], strict=True))
    assert all(
        by_id[review_id(t)] == y
        for t, y in zip(kept[source["text_column"]], kept["y"], strict=True)
    )
