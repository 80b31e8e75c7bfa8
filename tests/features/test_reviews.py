"""Unit tests of the shared review features, hostile text included."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.reviews import (
    FEATURE_COLUMNS,
    FEATURE_DTYPES,
    NUMERIC_FEATURES,
    build_features,
    clean_text,
)


def one(text: object) -> dict:
    return build_features(pd.DataFrame({"text": [text]})).iloc[0].to_dict()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Great film.<br /><br />Loved it", "great film. loved it"),
        ("Tom &amp; Jerry &quot;classic&quot;", 'tom & jerry "classic"'),
        ("I don\u2019t like it", "i don't like it"),
        ("It was\x96okay\x85", "it was–okay..."),
        ("  lots   of\t\nspace  ", "lots of space"),
        ("ﬁne ½", "fine 1⁄2"),
        ("nul\x00 and bell\x07", "nul and bell"),
        ("zero\u200bwidth", "zero width"),
        ("a < b and c > d", "a < b and c > d"),
        ('<p class="x">para</p><div>x</div>', "para x"),
        ("", ""),
    ],
)
def test_clean_text(raw: str, expected: str) -> None:
    assert clean_text(raw) == expected


def test_negations_survive_cleaning() -> None:
    row = one("I did NOT like it and I can't recommend it. Never again, no.")
    assert "not" in row["text_clean"] and "can't" in row["text_clean"]
    assert row["n_negations"] == 4


def test_raw_signals_are_measured_before_cleaning() -> None:
    row = one("WOW!!! Is this real?<br />Sooo good")
    assert row["n_exclaim"] == 3
    assert row["n_question"] == 1
    assert row["n_html_tags"] == 1
    assert row["elongated_words"] == 1
    assert row["n_chars"] == len("WOW!!! Is this real?<br />Sooo good")
    assert row["n_words"] == 6
    letters = sum(c.isalpha() for c in "WOW!!! Is this real?<br />Sooo good")
    assert row["upper_ratio"] == round(5 / letters, 6)


@pytest.mark.parametrize("missing", [None, float("nan"), pd.NA, ""])
def test_missing_text_gives_zero_row(missing: object) -> None:
    row = one(missing)
    assert row["text_clean"] == ""
    assert all(row[name] == 0 for name in NUMERIC_FEATURES)


def test_non_string_values_are_text() -> None:
    assert one(12345)["text_clean"] == "12345"


def test_very_long_text() -> None:
    text = "bad movie " * 100_000
    row = one(text)
    assert row["n_words"] == 200_000
    assert row["n_chars"] == len(text)


def test_output_shape_index_and_dtypes() -> None:
    df = pd.DataFrame({"text": ["a", None, "b!"]}, index=[10, 20, 30])
    out = build_features(df)
    assert list(out.columns) == list(FEATURE_COLUMNS)
    assert list(out.index) == [10, 20, 30]
    assert {k: str(v) for k, v in out.dtypes.items()} == FEATURE_DTYPES


def test_empty_frame_keeps_dtypes() -> None:
    out = build_features(pd.DataFrame({"text": pd.Series([], dtype=object)}))
    assert len(out) == 0
    assert {k: str(v) for k, v in out.dtypes.items()} == FEATURE_DTYPES


def test_missing_column_is_named() -> None:
    with pytest.raises(KeyError, match="'text'"):
        build_features(pd.DataFrame({"review": ["x"]}))


def test_row_result_does_not_depend_on_batch() -> None:
    texts = ["Loved it!", None, "<b>BAD</b> film??", "😀 sooo goood"]
    batch = build_features(pd.DataFrame({"text": texts}))
    for i, text in enumerate(texts):
        single = build_features(pd.DataFrame({"text": [text]}))
        pd.testing.assert_frame_equal(batch.iloc[[i]].reset_index(drop=True), single)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=300)), min_size=1, max_size=8))
def test_total_and_deterministic_on_arbitrary_unicode(texts: list[str | None]) -> None:
    df = pd.DataFrame({"text": texts})
    first = build_features(df)
    second = build_features(df.copy())
    pd.testing.assert_frame_equal(first, second)
    assert (first["n_chars"] >= 0).all()
    assert first["upper_ratio"].between(0, 1).all()
    for value in first["text_clean"]:
        assert value == value.strip()
        assert "  " not in value
        assert value == clean_text(value)  # cleaning is idempotent
