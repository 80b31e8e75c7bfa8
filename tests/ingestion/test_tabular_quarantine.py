"""validate_raw for a tabular use case: credit rows outside the contract are quarantined with
reason codes, nothing is dropped, accepted rows carry the contract's dtypes.

Everything goes through the training DAG's own task functions (`pipelines.training.ingest_sources`
and `validate`), on synthetic credit clients in the UCI file's layout with bad cells written in.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from contracts.credit import RAW_COLUMNS, raw_schema
from ingestion.errors import QuarantineThresholdExceeded, SourceConfigError
from synthetic.credit import LABEL_COLUMN, generate

N = 400
# (row, file column, value written into the CSV, expected reason, phrase of the detail)
BAD_CELLS = [
    (3, "EDUCATION", "9", "code_not_allowed", "education='9'"),
    (7, "LIMIT_BAL", "0", "value_out_of_range", "limit_bal='0'"),
    (11, "PAY_AMT2", "-10", "value_out_of_range", "pay_amt_2='-10'"),
    (13, "AGE", "abc", "value_not_numeric", "age='abc'"),
    (17, "BILL_AMT3", "", "value_missing", "bill_amt_3=None"),
    (19, "PAY_0", "12", "code_not_allowed", "pay_status_1='12'"),
    (23, "AGE", "35.5", "value_out_of_range", "age='35.5'"),
    (29, "BILL_AMT1", "NA", "value_missing", "bill_amt_1=None"),
]
BAD_LABELS = [(31, "", "label_missing"), (37, "7", "label_out_of_domain")]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DRIFTLOOP_HOME", str(tmp_path / "home"))
    return tmp_path


def _clients_csv(folder: Path, n: int = N) -> tuple[Path, pd.DataFrame]:
    frame = generate(n, seed=5).astype(str)
    for row, column, value, _, _ in BAD_CELLS:
        frame.loc[row, column] = value
    for row, value, _ in BAD_LABELS:
        frame.loc[row, LABEL_COLUMN] = value
    # Two copies of client 41 with the other label: every copy is quarantined.
    twin = frame.loc[[41]].copy()
    twin[LABEL_COLUMN] = str(1 - int(frame.loc[41, LABEL_COLUMN]))
    twin["ID"] = "twin"
    frame = pd.concat([frame, twin], ignore_index=True)
    path = folder / "clients.csv"
    frame.to_csv(path, index=False)
    return path, frame


def _run(params: dict, run_id: str, share: float = 0.05) -> dict:
    from pipelines.params import check_training_params
    from pipelines.training import ingest_sources, validate

    checked = check_training_params(params, check_files=True)
    manifest = ingest_sources(checked, run_id)
    return validate(manifest, share)


def test_bad_credit_rows_are_quarantined_with_reasons(home: Path) -> None:
    path, written = _clients_csv(home)
    report = _run(
        {"use_case": "credit", "data_path": str(path), "source": "credit_synthetic"}, "tab1"
    )
    assert report["use_case"] == "credit"
    assert report["rows_read"] == len(written) == N + 1
    assert report["rows_accepted"] + report["rows_quarantined"] == report["rows_read"]

    quarantined = pd.read_parquet(report["quarantine_path"]).set_index("source_row")
    expected = {row: reason for row, _, _, reason, _ in BAD_CELLS}
    expected |= {row: reason for row, _, reason in BAD_LABELS}
    expected |= {41: "duplicate_conflicting_label", N: "duplicate_conflicting_label"}
    assert quarantined["reason"].to_dict() == expected
    for row, _, _, _, phrase in BAD_CELLS:
        assert phrase in quarantined.loc[row, "detail"], quarantined.loc[row, "detail"]
    # The quarantine keeps every raw cell as written, under the canonical names.
    assert quarantined.loc[3, "education"] == "9"
    assert quarantined.loc[37, "raw_label"] == "7"
    assert set(RAW_COLUMNS) <= set(quarantined.columns)
    counts = report["quarantined_by_reason"]
    assert counts["value_out_of_range"] == 3 and counts["code_not_allowed"] == 2

    accepted = pd.read_parquet(report["accepted_path"])
    assert len(accepted) == N + 1 - len(expected)
    raw_schema.validate(accepted)  # typed: int64 codes and ages, float64 amounts
    assert str(accepted["education"].dtype) == "int64"
    assert str(accepted["limit_bal"].dtype) == "float64"
    assert not set(expected) & set(accepted["source_row"])
    # Great Expectations saw the same file: the range and code expectations failed (warnings).
    failed = {(f["expectation"], f["column"]) for f in report["ge_failures"]}
    assert ("expect_column_values_to_be_in_set", "EDUCATION") in failed
    assert ("expect_column_values_to_be_between", "LIMIT_BAL") in failed
    assert not report["ge_success"]
    assert Path(report["data_docs_path"]).is_file()


def test_too_many_bad_credit_rows_fail_the_run(home: Path) -> None:
    path, _ = _clients_csv(home, n=100)  # 12 bad rows of 101: above 5 %
    with pytest.raises(QuarantineThresholdExceeded, match="value_out_of_range"):
        _run({"use_case": "credit", "data_path": str(path), "source": "credit_synthetic"}, "tab2")


def test_synthetic_credit_rows_of_an_empty_form(home: Path) -> None:
    report = _run({"use_case": "credit", "synthetic_rows": 300}, "tab3")
    assert report["rows_read"] == 300
    assert report["rows_accepted"] + report["rows_quarantined"] == 300
    assert set(report["per_source"]) == {"credit_synthetic"}


def test_a_run_feeds_one_use_case(home: Path) -> None:
    path, _ = _clients_csv(home)
    reviews = home / "reviews.csv"
    reviews.write_text("text,label\ngreat film,1\n")
    with pytest.raises(SourceConfigError, match="different use cases"):
        _run(
            {
                "use_case": "credit",
                "data_path": str(path),
                "source": "credit_synthetic",
                "extra_sources": [
                    {
                        "path": str(reviews),
                        "name": "rev",
                        "text_column": "text",
                        "label_column": "label",
                        "label_map": {"0": 0, "1": 1},
                    }
                ],
            },
            "tab4",
        )
