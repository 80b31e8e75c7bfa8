"""The real Amazon, Kindle and IMDB files, end to end, checked against independent pandas counts.

One run ingests all three (as a multi-domain training run would), so Great
Expectations starts once. The expected counts are computed here with plain
pandas, reading the files differently from the reader under test (default NA
handling, numeric ratings) and applying the quarantine rules as written in
ingestion/quarantine.yaml.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from contracts.reviews import MAX_TEXT_CHARS
from ingestion import snapshot_sources, validate_sources
from tests.conftest import real_dataset

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

FILES = {
    "amazon": ("amazon_product_reviews_datafiniti_34660.csv.gz", "reviews.text", "reviews.rating"),
    "kindle": ("kindle_reviews_5core_sample_4905.csv.gz", "reviewText", "overall"),
    "imdb": ("imdb_50k.csv.gz", "review", "sentiment"),
}


def expected_reasons(
    path: Path, text_col: str, label_col: str, star_ratings: bool
) -> dict[str, int]:
    """Reason counts from first principles (rows get the first reason that applies)."""
    frame = pd.read_csv(path, low_memory=False)
    text = frame[text_col]
    empty = text.isna() | (text.astype(str).str.strip() == "")
    undecodable = ~empty & text.astype(str).str.contains("\ufffd", regex=False)
    too_long = ~empty & ~undecodable & (text.astype(str).str.len() > MAX_TEXT_CHARS)
    ok_text = ~empty & ~undecodable & ~too_long
    label = frame[label_col]
    missing = ok_text & label.isna()
    if star_ratings:
        neutral = ok_text & (label == 3)
        outside = ok_text & label.notna() & ~label.isin([1, 2, 3, 4, 5])
    else:
        neutral = pd.Series(False, index=frame.index)
        outside = ok_text & label.notna() & ~label.isin(["positive", "negative"])
    if star_ratings:
        binary = label.map({1: 0, 2: 0, 4: 1, 5: 1})
    else:
        binary = label.map({"negative": 0, "positive": 1})
    labelled = ok_text & binary.notna()
    n_labels = binary[labelled].groupby(text[labelled]).transform("nunique")
    conflicting = int((n_labels > 1).sum())
    counts = {
        "duplicate_conflicting_label": conflicting,
        "text_empty": int(empty.sum()),
        "text_undecodable": int(undecodable.sum()),
        "text_too_long": int(too_long.sum()),
        "label_missing": int(missing.sum()),
        "label_unmapped": int(neutral.sum()),
        "label_out_of_domain": int(outside.sum()),
    }
    return {k: v for k, v in counts.items() if v}


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    paths = {name: real_dataset(file) for name, (file, _, _) in FILES.items()}
    run_dir = tmp_path_factory.mktemp("real_run")
    manifest = snapshot_sources(
        [{"path": str(paths[name]), "source": name} for name in FILES], str(run_dir)
    )
    report = validate_sources(manifest, str(run_dir))
    return {"paths": paths, "manifest": manifest, "report": report}


@pytest.mark.parametrize("name", ["amazon", "kindle", "imdb"])
def test_quarantine_counts_match_an_independent_computation(name: str, real_run: dict) -> None:
    _, text_col, label_col = FILES[name]
    expected = expected_reasons(real_run["paths"][name], text_col, label_col, name != "imdb")
    counts = real_run["report"]["per_source"][name]
    assert counts["quarantined_by_reason"] == expected
    assert counts["rows_accepted"] + counts["rows_quarantined"] == counts["rows_read"]


def test_known_figures_of_the_published_files(real_run: dict) -> None:
    """The dataset README's own numbers, so a silent mis-read of a file cannot hide."""
    per = real_run["report"]["per_source"]
    assert per["amazon"]["rows_read"] == 34_660
    assert per["amazon"]["quarantined_by_reason"]["label_unmapped"] == 1_499
    assert per["amazon"]["quarantined_by_reason"]["label_missing"] == 33
    assert per["kindle"]["rows_read"] == 4_905
    assert per["kindle"]["quarantined_by_reason"] == {"label_unmapped": 463, "text_empty": 1}
    assert per["imdb"]["rows_read"] == 50_000
    assert per["imdb"]["rows_quarantined"] == 0
    accepted = pd.read_parquet(real_run["report"]["accepted_path"], columns=["source", "label"])
    imdb_labels = accepted.loc[accepted["source"] == "imdb", "label"].value_counts().to_dict()
    assert imdb_labels == {0: 25_000, 1: 25_000}


def test_real_run_passes_the_checkpoint_and_links_data_docs(real_run: dict) -> None:
    report = real_run["report"]
    assert report["status"] == "passed"
    assert report["ge_success"] is True, report["ge_failures"]
    assert Path(report["data_docs_path"]).is_file()
    assert report["quarantine_share"] < 0.01
    assert report["data_sha256"] == real_run["manifest"]["data_sha256"]
