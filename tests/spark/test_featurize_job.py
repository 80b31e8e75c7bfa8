"""The Spark feature job on synthetic reviews plus hand-made hostile rows.

Expected values come from plain pandas, hashlib and the shared `features.reviews` module, never
from the job itself, so a wrong count, id, split or feature makes a test fail.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.reviews import FEATURE_COLUMNS, FEATURE_DTYPES, NUMERIC_FEATURES, build_features
from jobs.spark import featurize as job
from jobs.spark.featurize import featurize, read_features
from synthetic.reviews import generate_reviews

pytestmark = pytest.mark.spark

LONG_KEPT = "word! " * 2500  # 15,000 characters: long but within the contract's limit
TOO_LONG = "x" * 25_001

# (text, raw label, expected outcome) appended after the synthetic rows.
HOSTILE: list[tuple[Any, Any, str]] = [
    ("", "1", "empty_text"),
    ("   \t\n ", "0", "empty_text"),
    (None, "1", "empty_text"),
    ("\u3000\u00a0", "1", "empty_text"),
    ("<p>Great <b>film</b></p><br /><br />Loved it &amp; more", "1", "kept"),
    ("Loved it \U0001f600\U0001f44d sooo good", "positive", "kept"),
    ("bad\x00 movie\x07 \x1b[31m red \x85 dots", "negative", "kept"),
    (LONG_KEPT, "0", "kept"),
    (TOO_LONG, "1", "text_too_long"),
    ("A fine duplicate review.", "1", "kept"),
    ("A fine duplicate review.", "1", "duplicate"),
    ("A fine duplicate review.", " 1 ", "duplicate"),
    ("Conflicting review text.", "1", "conflicting_labels"),
    ("Conflicting review text.", "0", "conflicting_labels"),
    ("A review with a weird label.", "maybe", "label_unmapped"),
    ("Another review without a label.", None, "label_unmapped"),
    ("Shouted label, still positive.", "POSITIVE", "kept"),
    ("  padded review, kept as written\t", "0", "kept"),
]
N_SYNTHETIC = 400


def review_id(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def hash_split(text: str, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """The split rule written out independently: 32 hash bits after the id's 64."""
    bucket = int(hashlib.sha256(text.encode("utf-8")).hexdigest()[16:24], 16) / 2**32
    if bucket < fractions[0]:
        return "train"
    return "valid" if bucket < fractions[0] + fractions[1] else "test"


def hostile_input() -> pd.DataFrame:
    synthetic = generate_reviews(N_SYNTHETIC, seed=7)
    assert synthetic["text"].is_unique  # the expected counts below rely on it
    synthetic = synthetic.assign(label=synthetic["label"].astype(str), expected="kept")
    extra = pd.DataFrame(HOSTILE, columns=["text", "label", "expected"])
    return pd.concat([synthetic, extra], ignore_index=True)


@pytest.fixture(scope="module")
def hostile_run(spark, tmp_path_factory) -> Iterator[tuple[pd.DataFrame, dict, Path]]:
    base = tmp_path_factory.mktemp("hostile")
    frame = hostile_input()
    frame[["text", "label"]].to_parquet(base / "reviews.parquet", index=False)
    stats = featurize(spark, str(base / "reviews.parquet"), str(base / "out"))
    yield frame, stats, base / "out"


def test_stats_count_every_row_exactly(hostile_run) -> None:
    _, stats, out = hostile_run
    assert stats["rows_read"] == N_SYNTHETIC + len(HOSTILE)
    assert stats["quarantined"] == {
        "empty_text": 4,
        "text_too_long": 1,
        "label_unmapped": 2,
        "split_unmapped": 0,
        "conflicting_labels": 2,
    }
    assert stats["quarantined_total"] == 9
    assert stats["duplicates_removed"] == 2
    assert stats["rows_written"] == N_SYNTHETIC + 7
    assert sum(stats["rows_per_split"].values()) == stats["rows_written"]
    assert json.loads((out / "stats.json").read_text()) == stats
    assert stats["split_method"] == "hash"


def test_quarantine_rows_carry_position_text_and_reason(hostile_run) -> None:
    frame, _, out = hostile_run
    quarantine = pd.read_parquet(out / "quarantine")
    assert list(quarantine.columns) == [
        "source_row",
        "review_id",
        "text",
        "raw_label",
        "raw_split",
        "reason",
    ]
    expected = frame[~frame["expected"].isin(["kept", "duplicate"])]
    got = quarantine.set_index("source_row").sort_index()
    assert got.index.tolist() == expected.index.tolist()
    assert got["reason"].tolist() == expected["expected"].tolist()
    for row, item in got.iterrows():
        source_text = frame.at[row, "text"]
        assert item["text"] == source_text or (item["text"] is None and source_text is None)
        assert item["raw_label"] == frame.at[row, "label"]
        assert item["review_id"] == (None if source_text is None else review_id(source_text))


def test_features_equal_plain_pandas_row_by_row(hostile_run) -> None:
    frame, _, out = hostile_run
    got = read_features(out).set_index("review_id")
    kept = frame[frame["expected"] == "kept"].reset_index(drop=True)
    expected = pd.concat([kept, build_features(kept)], axis=1)
    expected.index = [review_id(text) for text in kept["text"]]
    assert sorted(got.index) == sorted(expected.index)
    got = got.loc[expected.index]

    assert got["text"].tolist() == kept["text"].tolist()  # raw text unchanged
    assert got["label"].tolist() == [
        {"0": 0, "1": 1, "negative": 0, "positive": 1}[str(v).lower()] for v in kept["label"]
    ]
    for name in FEATURE_COLUMNS:
        if FEATURE_DTYPES[name] == "float64":
            for a, b in zip(got[name], expected[name], strict=True):
                assert math.isclose(a, b, rel_tol=0, abs_tol=1e-12), name
        else:
            assert got[name].tolist() == expected[name].tolist(), name
    assert got.loc[review_id(LONG_KEPT), "n_chars"] == 15_000


def test_ids_and_splits_follow_the_text_hash(hostile_run) -> None:
    _, _, out = hostile_run
    got = read_features(out)
    assert got["review_id"].tolist() == [review_id(t) for t in got["text"]]
    assert got["split"].tolist() == [hash_split(t) for t in got["text"]]


def test_output_columns_and_dtypes(hostile_run) -> None:
    _, _, out = hostile_run
    columns = ["review_id", "text", "label", "split", *FEATURE_COLUMNS]
    schema = pq.read_schema(next((out / "features").glob("*.parquet")))
    assert schema.names == columns
    frame = read_features(out)
    assert list(frame.columns) == columns
    expected = {"review_id": "object", "text": "object", "label": "int64", "split": "object"}
    assert {k: str(v) for k, v in frame.dtypes.items()} == {**expected, **FEATURE_DTYPES}
    assert set(frame["split"]) <= {"train", "valid", "test"}
    assert all(isinstance(v, str) for v in frame["split"])
    assert all(frame[name].notna().all() for name in NUMERIC_FEATURES)
    assert not [p.name for p in out.iterdir() if p.name.startswith("_")]


@pytest.fixture(scope="module")
def five_k(tmp_path_factory) -> tuple[pd.DataFrame, Path, Path]:
    """5,000 reviews as one Parquet file and as a folder of five files."""
    base = tmp_path_factory.mktemp("fivek")
    frame = generate_reviews(5000, seed=11)
    frame.to_parquet(base / "one.parquet", index=False)
    (base / "five").mkdir()
    for i in range(5):
        frame.iloc[i::5].to_parquet(base / "five" / f"part-{i}.parquet", index=False)
    return frame, base / "one.parquet", base / "five"


def test_split_is_stable_across_partitioning_and_fractions_hold(spark, five_k, tmp_path) -> None:
    frame, one, five = five_k
    assert spark.read.parquet(str(one)).rdd.getNumPartitions() != (
        spark.read.parquet(str(five)).rdd.getNumPartitions()
    )
    previous = spark.conf.get("spark.sql.shuffle.partitions")
    try:
        spark.conf.set("spark.sql.shuffle.partitions", "1")
        first = featurize(spark, str(one), str(tmp_path / "a"))
        spark.conf.set("spark.sql.shuffle.partitions", "7")
        second = featurize(spark, str(five), str(tmp_path / "b"))
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", previous)

    a = read_features(tmp_path / "a")
    b = read_features(tmp_path / "b")
    assert len(a) == first["rows_written"] == second["rows_written"] == 5000
    pd.testing.assert_frame_equal(a, b)
    assert dict(zip(a["review_id"], a["split"], strict=True)) == {
        review_id(t): hash_split(t) for t in frame["text"]
    }
    shares = a["split"].value_counts(normalize=True)
    assert abs(shares["train"] - 0.8) < 0.03
    assert abs(shares["valid"] - 0.1) < 0.02
    assert abs(shares["test"] - 0.1) < 0.02
    assert first["rows_per_split"] == a["split"].value_counts().to_dict()
    for split, share in first["positive_share_per_split"].items():
        assert share == pytest.approx(a.loc[a["split"] == split, "label"].mean(), abs=1e-6)


DOTTED = pd.DataFrame(
    {
        "reviews.text": [
            'Line one\nline two, with "quotes" and a comma',
            "Plain and short.",
            "Third one\r\nwith CRLF inside",
            "Three stars, neither here nor there.",
            "Great value, works perfectly!",
        ],
        "reviews.rating": [5, 1, 5, 3, 5],
        "other": ["a", "b", "c", "d", "e"],
    }
)


@pytest.mark.parametrize("fmt", ["csv.gz", "jsonl", "parquet-folder"])
def test_formats_and_dotted_columns_read_alike(spark, tmp_path, fmt) -> None:
    if fmt == "csv.gz":
        path = tmp_path / "in.csv.gz"
        DOTTED.to_csv(path, index=False)
    elif fmt == "jsonl":
        path = tmp_path / "in.jsonl"
        DOTTED.to_json(path, orient="records", lines=True)
    else:
        path = tmp_path / "folder"
        path.mkdir()
        DOTTED.iloc[:2].to_parquet(path / "a.parquet", index=False)
        DOTTED.iloc[2:].to_parquet(path / "b.parquet", index=False)
    stats = featurize(
        spark,
        str(path),
        str(tmp_path / "out"),
        text_column="reviews.text",
        label_column="reviews.rating",
        label_map={"1": 0, "2": 0, "4": 1, "5": 1},
    )
    assert stats["rows_read"] == 5
    assert stats["quarantined"]["label_unmapped"] == 1
    got = read_features(tmp_path / "out")
    kept = DOTTED[DOTTED["reviews.rating"] != 3]
    assert sorted(got["text"]) == sorted(kept["reviews.text"])
    assert dict(zip(got["text"], got["label"], strict=True)) == dict(
        zip(kept["reviews.text"], (kept["reviews.rating"] >= 4).astype(int), strict=True)
    )


def test_an_input_source_column_is_kept_next_to_the_features(spark, tmp_path) -> None:
    # Ingestion's accepted rows carry `source`; the gate compares models per source with it.
    frame = generate_reviews(60, seed=3)
    frame["source"] = ["imdb" if i % 3 else "kindle" for i in range(len(frame))]
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    featurize(spark, str(tmp_path / "in.parquet"), str(tmp_path / "out"))
    got = read_features(tmp_path / "out")
    assert list(got.columns[:5]) == ["review_id", "text", "source", "label", "split"]
    assert dict(zip(got["text"], got["source"], strict=True)) == dict(
        zip(frame["text"], frame["source"], strict=True)
    )


def test_split_column_with_train_test_carves_valid_from_train(spark, tmp_path) -> None:
    frame = generate_reviews(600, seed=5)
    frame["fold"] = ["train" if i % 3 else "Test " for i in range(len(frame))]
    frame.loc[0, "fold"] = "holdout"
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    stats = featurize(
        spark, str(tmp_path / "in.parquet"), str(tmp_path / "out"), split_column="fold"
    )
    assert stats["split_method"] == "column+valid_carved_from_train"
    assert stats["quarantined"]["split_unmapped"] == 1
    got = read_features(tmp_path / "out").set_index("text")
    given = frame.iloc[1:].set_index("text")["fold"].str.strip().str.lower()
    assert (got.loc[given[given == "test"].index, "split"] == "test").all()
    from_train = got.loc[given[given == "train"].index, "split"]
    expected = [
        "valid" if hash_split(t, (0.0, 0.1 / 0.9, 1 - 0.1 / 0.9)) == "valid" else "train"
        for t in from_train.index
    ]
    assert from_train.tolist() == expected
    assert 0.05 < (from_train == "valid").mean() < 0.18
    quarantine = pd.read_parquet(tmp_path / "out" / "quarantine")
    assert quarantine[["source_row", "raw_split", "reason"]].values.tolist() == [
        [0, "holdout", "split_unmapped"]
    ]


def test_failed_run_leaves_previous_output_untouched(spark, tmp_path, monkeypatch) -> None:
    frame = generate_reviews(50, seed=2)
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    out = tmp_path / "out"
    featurize(spark, str(tmp_path / "in.parquet"), str(out))
    before = read_features(out)
    stats_before = (out / "stats.json").read_text()

    def broken_batches(keep, *args, **kwargs):
        def fail(batches):
            for _ in batches:
                raise RuntimeError("feature code blew up")
                yield  # a generator, like the real one

        return fail

    monkeypatch.setattr(job, "make_feature_batches", broken_batches)
    with pytest.raises(Exception, match="feature code blew up"):
        featurize(spark, str(tmp_path / "in.parquet"), str(out))
    pd.testing.assert_frame_equal(read_features(out), before)
    assert (out / "stats.json").read_text() == stats_before
    assert sorted(p.name for p in out.iterdir()) == ["features", "quarantine", "stats.json"]


def test_header_only_input_writes_an_empty_typed_table(spark, tmp_path) -> None:
    (tmp_path / "empty.csv").write_text("text,label\n")
    stats = featurize(spark, str(tmp_path / "empty.csv"), str(tmp_path / "out"))
    assert (stats["rows_read"], stats["rows_written"], stats["quarantined_total"]) == (0, 0, 0)
    frame = read_features(tmp_path / "out")
    assert frame.empty
    assert str(frame["label"].dtype) == "int64"
    assert str(frame["upper_ratio"].dtype) == "float64"
