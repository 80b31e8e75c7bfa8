"""bench.features_bench: the input it builds and the output hash it compares."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd

from bench.features_bench import build_input, child_pandas, feature_hash
from contracts.reviews import MAX_TEXT_CHARS, ROW_ID


def _datasets(tmp_path: Path) -> Path:
    folder = tmp_path / "datasets"
    folder.mkdir(parents=True)
    reviews = [f"Review number {i}, it was {'great' if i % 2 else 'bad'} indeed" for i in range(30)]
    reviews += ["", "   ", "x" * (MAX_TEXT_CHARS + 1), reviews[0]]  # dropped: blank, long, copy
    frame = pd.DataFrame(
        {"review": reviews, "sentiment": ["positive", "negative"] * (len(reviews) // 2)}
    )
    with gzip.open(folder / "imdb_50k.csv.gz", "wt") as handle:
        frame.to_csv(handle, index=False)
    return folder


def test_input_repeats_real_reviews_with_perturbations_and_no_copies(tmp_path: Path) -> None:
    frame = build_input(200, _datasets(tmp_path))
    assert len(frame) == 200
    assert frame["text"].is_unique
    assert frame["text"].str.strip().str.len().gt(0).all()
    assert frame["text"].str.len().le(MAX_TEXT_CHARS).all()
    assert set(frame["label"]) == {0, 1}
    # The first pass is the real reviews as they are; later ones differ from them.
    assert frame["text"].iloc[0] == "Review number 0, it was bad indeed"
    assert build_input(200, _datasets(tmp_path / "again")).equals(frame)  # seeded


def test_hash_ignores_row_order_but_not_values(tmp_path: Path) -> None:
    frame = build_input(40, _datasets(tmp_path))
    frame.to_parquet(tmp_path / "input.parquet", index=False)
    result = child_pandas(tmp_path / "input.parquet", tmp_path / "out")
    written = pd.read_parquet(tmp_path / "out")
    assert result["rows"] == 40 and written[ROW_ID].is_unique
    assert feature_hash(written) == result["hash"]
    assert feature_hash(written.sample(frac=1.0, random_state=1)) == result["hash"]
    changed = written.copy()
    changed.loc[0, "n_chars"] += 1
    assert feature_hash(changed) != result["hash"]
