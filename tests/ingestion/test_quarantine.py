"""Bad rows are quarantined with a reason and their row number, never dropped."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from contracts.reviews import MAX_TEXT_CHARS
from ingestion.errors import NoRowsAccepted, QuarantineThresholdExceeded
from tests.ingestion.filemakers import csv_bytes, padding

# (text, label, expected reason or None). Row numbers are list positions.
HOSTILE_ROWS: list[tuple[str, str, str | None]] = [
    ("A fine film, I liked it.", "1", None),
    ("", "1", "text_empty"),
    ("  \t  ", "0", "text_empty"),
    ("caf\ufffd was great", "1", "text_undecodable"),
    ("INVALID_BYTE_ROW", "0", "text_undecodable"),
    ("x" * (MAX_TEXT_CHARS + 1), "0", "text_too_long"),
    ("No label here", "", "label_missing"),
    ("Label spelled NA", "NA", "label_missing"),
    ("Seven is not a label", "7", "label_out_of_domain"),
    ("NA", "1", None),
    ("Same words, different opinions", "1", "duplicate_conflicting_label"),
    ("Same words, different opinions", "0", "duplicate_conflicting_label"),
    ("Same words, different opinions", "positive", "duplicate_conflicting_label"),
    ("Said twice, agreed twice", "1", None),
    ("Said twice, agreed twice", "positive", None),
    ("line one\nline two, with a comma", "0", None),
    ('He said "wow", really', "negative", None),
    ("x" * MAX_TEXT_CHARS, "1", None),
]
PADDING = 250


def hostile_file() -> bytes:
    rows = [(t, lab) for t, lab, _ in HOSTILE_ROWS] + padding(PADDING)
    data = csv_bytes(rows)
    # A byte that is not UTF-8 (Latin-1 e-acute), the way mis-encoded exports look.
    return data.replace(b"INVALID_BYTE_ROW", b"caf\xe9 au lait")


def test_every_kind_of_bad_row_is_quarantined_with_its_reason(
    write_file, ingest_validate, run_dir: Path
) -> None:
    path = write_file("hostile.csv", hostile_file())
    report = ingest_validate([{"path": str(path), "source": "synthetic"}])

    accepted = pd.read_parquet(report["accepted_path"])
    quarantine = pd.read_parquet(report["quarantine_path"])
    expected = {i: r for i, (_, _, r) in enumerate(HOSTILE_ROWS) if r}
    n_read = len(HOSTILE_ROWS) + PADDING

    assert dict(zip(quarantine["source_row"], quarantine["reason"], strict=True)) == expected
    assert report["rows_read"] == n_read
    assert report["rows_quarantined"] == len(expected) == 11
    assert report["rows_accepted"] == n_read - 11 == len(accepted)
    assert report["quarantined_by_reason"] == {
        "duplicate_conflicting_label": 3,
        "text_empty": 2,
        "text_undecodable": 2,
        "label_missing": 2,
        "text_too_long": 1,
        "label_out_of_domain": 1,
    }
    assert report["per_source"]["synthetic"]["rows_read"] == n_read
    assert report["status"] == "passed"

    assert list(accepted.columns) == ["text", "label", "source", "source_row", "part"]
    assert str(accepted["label"].dtype) == "int64" and str(accepted["source_row"].dtype) == "int64"
    assert set(accepted["source_row"]) | set(quarantine["source_row"]) == set(range(n_read))
    by_row = accepted.set_index("source_row")
    assert by_row.loc[9, "text"] == "NA"  # the literal review "NA" is text, not missing
    assert by_row.loc[15, "text"] == "line one\nline two, with a comma"
    assert by_row.loc[16, "label"] == 0
    assert by_row.loc[13, "label"] == by_row.loc[14, "label"] == 1  # same-label copies stay
    assert len(by_row.loc[17, "text"]) == MAX_TEXT_CHARS

    q = quarantine.set_index("source_row")
    assert list(quarantine.columns) == [
        "source",
        "source_row",
        "text",
        "raw_label",
        "reason",
        "detail",
    ]
    assert (
        q.loc[6, "raw_label"] == ""
        and q.loc[7, "raw_label"] == "NA"
        and q.loc[8, "raw_label"] == "7"
    )
    assert q.loc[4, "text"] == "caf\\udce9 au lait"
    assert "0xE9 at position 3" in q.loc[4, "detail"]
    assert "U+FFFD" in q.loc[3, "detail"]
    assert f"at most {MAX_TEXT_CHARS}" in q.loc[5, "detail"]
    assert "whitespace only" in q.loc[2, "detail"]
    assert "appears 3 times with labels 0 (1x) and 1 (2x)" in q.loc[10, "detail"]
    assert "synthetic:10, synthetic:11, synthetic:12" in q.loc[11, "detail"]

    # Great Expectations saw the out-of-set label: reported (warning), not fatal.
    failed = {(f["expectation"], f["column"]) for f in report["ge_failures"]}
    assert ("expect_column_values_to_be_in_set", "label") in failed
    assert report["ge_success"] is False
    docs = Path(report["data_docs_path"])
    assert docs == run_dir.resolve() / "data_docs" / "index.html" and docs.is_file()
    assert "raw_synthetic" in docs.read_text()
    saved = json.loads((run_dir / "validation_report.json").read_text())
    assert saved["rows_quarantined"] == 11 and saved["status"] == "passed"


def test_expected_unmapped_labels_are_reported_but_not_counted(write_file, ingest_validate) -> None:
    """A third of the reviews are neutral 3-star: reported, yet the run passes."""
    rows = [(f"Stars review {i}", str(1 + i % 5)) for i in range(60)]
    rows += [("A six-star review?", "6"), ("Float stars", "4.0"), ("Float neutral", "3.0")]
    path = write_file(
        "stars.jsonl.gz",
        gzip.compress(
            "\n".join(
                json.dumps({"body": t, "stars": float(s) if "." in s else int(s)}) for t, s in rows
            ).encode()
        ),
    )
    source = {
        "path": str(path),
        "name": "stars",
        "text_column": "body",
        "label_column": "stars",
        "label_map": {"1": 0, "2": 0, "4": 1, "5": 1},
        "expected_unmapped": ["3"],
    }
    report = ingest_validate([source], max_quarantine_share=0.02)
    assert report["quarantined_by_reason"] == {"label_unmapped": 13, "label_out_of_domain": 1}
    assert report["rows_quarantined_counted"] == 1
    assert report["quarantine_share"] == pytest.approx(1 / 63)
    assert report["excluded_from_share"] == ["label_unmapped"]
    accepted = pd.read_parquet(report["accepted_path"])
    assert accepted.set_index("source_row").loc[61, "label"] == 1  # 4.0 maps like 4
    assert len(accepted) == 63 - 14


def test_threshold_failure_names_top_reasons_and_writes_no_accepted_file(
    write_file, ingest_validate, run_dir: Path
) -> None:
    rows = padding(40) + [("", "1")] * 3 + [(f"unlabelled {i}", "") for i in range(5)]
    rows += [("neutral", "3")]
    path = write_file("bad.csv", csv_bytes(rows))
    source = {"path": str(path), "source": "synthetic", "expected_unmapped": ["3"]}
    with pytest.raises(QuarantineThresholdExceeded) as caught:
        ingest_validate([source], max_quarantine_share=0.1)
    message = str(caught.value)
    assert "above the limit of 10.0%" in message
    assert "source 'synthetic': 16.3% of rows quarantined (8 of 49)" in message
    assert "Top reasons: label_missing 5, text_empty 3." in message
    assert "Reported but not counted: label_unmapped 1." in message
    assert str(run_dir.resolve() / "quarantine.parquet") in message
    assert not (run_dir / "accepted.parquet").exists()
    assert len(pd.read_parquet(run_dir / "quarantine.parquet")) == 9
    report = json.loads((run_dir / "validation_report.json").read_text())
    assert report["status"] == "failed" and report["failure"].startswith(
        "QuarantineThresholdExceeded"
    )
    assert caught.value.report["rows_quarantined_counted"] == 8


def test_one_bad_source_fails_the_run_even_when_the_total_share_is_low(
    write_file, ingest_validate
) -> None:
    good = write_file("good.csv", csv_bytes(padding(400)))
    bad = write_file("bad.csv", csv_bytes(padding(6, start=1000) + [("", "1")] * 4))
    with pytest.raises(QuarantineThresholdExceeded) as caught:
        ingest_validate(
            [
                {"path": str(good), "source": "synthetic", "name": "good"},
                {"path": str(bad), "source": "synthetic", "name": "bad"},
            ]
        )
    message = str(caught.value)
    assert "source 'bad': 40.0% of rows quarantined (4 of 10)" in message
    assert "'good'" not in message and "all sources" not in message


def test_conflicting_duplicates_are_found_across_sources(write_file, ingest_validate) -> None:
    a = write_file("a.csv", csv_bytes([*padding(30), ("Shared text", "1")]))
    b = write_file("b.csv", csv_bytes([*padding(30, start=100), ("Shared text", "0")]))
    report = ingest_validate(
        [
            {"path": str(a), "source": "synthetic", "name": "a"},
            {"path": str(b), "source": "synthetic", "name": "b"},
        ]
    )
    quarantine = pd.read_parquet(report["quarantine_path"])
    assert quarantine[["source", "source_row", "reason"]].values.tolist() == [
        ["a", 30, "duplicate_conflicting_label"],
        ["b", 30, "duplicate_conflicting_label"],
    ]
    assert report["per_source"]["a"]["rows_accepted"] == 30


def test_parquet_input_with_non_string_text_and_null_labels(write_file, ingest_validate) -> None:
    frame = pd.DataFrame(
        {
            "text": ["good one", None, "fine", "also fine", "number next", "ok"]
            + [f"p{i}" for i in range(200)],
            "label": [1.0, 0.0, None, 1.0, 0.0, 1.0] + [float(i % 2) for i in range(200)],
        }
    )
    path = write_file("in.parquet", b"")
    frame.to_parquet(path)
    jsonl = write_file(
        "in.jsonl", b'{"text": 12345, "label": 1}\n{"text": "fine json", "label": null}\n'
    )
    report = ingest_validate(
        [
            {"path": str(path), "source": "synthetic", "name": "pq"},
            {"path": str(jsonl), "source": "synthetic", "name": "js"},
        ],
        max_quarantine_share=1.0,
    )
    assert report["per_source"]["pq"]["quarantined_by_reason"] == {
        "text_empty": 1,
        "label_missing": 1,
    }
    assert report["per_source"]["js"]["quarantined_by_reason"] == {
        "text_not_string": 1,
        "label_missing": 1,
    }
    quarantine = pd.read_parquet(report["quarantine_path"]).set_index(["source", "source_row"])
    assert quarantine.loc[("js", 0), "text"] == "12345"
    assert pd.isna(quarantine.loc[("pq", 2), "raw_label"])
    accepted = pd.read_parquet(report["accepted_path"])
    assert accepted.loc[accepted["part"] == "pq", "label"].tolist()[:3] == [1, 1, 0]
    assert set(accepted["source"]) == {"synthetic"}  # both files are one segment


def test_a_file_of_neutral_reviews_only_is_refused(write_file, ingest_validate) -> None:
    path = write_file("neutral.csv", csv_bytes([(f"meh {i}", "3") for i in range(5)]))
    with pytest.raises(NoRowsAccepted, match="all 5 rows were quarantined"):
        ingest_validate([{"path": str(path), "source": "synthetic", "expected_unmapped": ["3"]}])
