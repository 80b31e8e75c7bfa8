"""The credit GE suite, the source mapping and the credit contract say the same thing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from contracts.credit import RAW_FIELDS, row_reasons
from contracts.sources import load_sources, source_columns
from features.credit import RAW_COLUMNS
from ingestion.expectations import load_suite
from synthetic.credit import generate

SOURCE = load_sources()["credit"]
TO_FILE = source_columns(SOURCE, RAW_COLUMNS)


def _by_type(kind: str) -> dict[str, dict]:
    suite = load_suite("raw_credit")
    return {e["kwargs"]["column"]: e for e in suite["expectations"] if e["type"] == kind}


def test_every_raw_column_and_the_label_must_exist() -> None:
    exist = _by_type("expect_column_to_exist")
    assert set(exist) == {*TO_FILE.values(), SOURCE["label_column"]}
    assert all(e["severity"] == "critical" for e in exist.values())


def test_ranges_and_codes_are_the_contracts() -> None:
    ranges = _by_type("expect_column_values_to_be_between")
    codes = _by_type("expect_column_values_to_be_in_set")
    for name, spec in RAW_FIELDS.items():
        column = TO_FILE[name]
        if spec.codes:
            assert codes[column]["kwargs"]["value_set"] == list(spec.codes), name
        else:
            kwargs = ranges[column]["kwargs"]
            assert (kwargs["min_value"], kwargs["max_value"]) == (spec.low, spec.high), name
    assert codes[SOURCE["label_column"]]["kwargs"]["value_set"] == [0, 1]


def test_synthetic_source_shares_the_uci_mapping() -> None:
    synthetic = load_sources()["credit_synthetic"]
    assert source_columns(synthetic, RAW_COLUMNS) == TO_FILE
    assert synthetic["expectation_suite"] == SOURCE["expectation_suite"] == "raw_credit"
    assert set(generate(5, seed=0).columns) == {"ID", *TO_FILE.values(), SOURCE["label_column"]}


@pytest.mark.slow
def test_suite_flags_out_of_contract_rows_in_great_expectations(tmp_path: Path) -> None:
    """Run the suite through GE on a frame with bad cells: exactly those expectations fail."""
    import great_expectations as gx

    frame = generate(50, seed=3)
    frame.loc[3, "EDUCATION"] = 9
    frame.loc[7, "LIMIT_BAL"] = 0.0
    frame.loc[11, "PAY_AMT2"] = -10.0
    context = gx.get_context(mode="ephemeral")
    batch = (
        context.data_sources.add_pandas("credit")
        .add_dataframe_asset("raw")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    suite = load_suite("raw_credit")
    failed = set()
    for item in suite["expectations"]:
        expectation = gx.expectations.__dict__[
            "".join(part.title() for part in item["type"].split("_"))
        ](**item["kwargs"])
        if not batch.validate(expectation).success:
            failed.add((item["type"], item["kwargs"].get("column")))
    assert failed == {
        ("expect_column_values_to_be_in_set", "EDUCATION"),
        ("expect_column_values_to_be_between", "LIMIT_BAL"),
        ("expect_column_values_to_be_between", "PAY_AMT2"),
    }
    # The contract's own row reasons quarantine the same three rows.
    raw = frame.rename(columns={f: c for c, f in TO_FILE.items()})
    reasons = row_reasons(raw)
    assert reasons.index[reasons["reason"].notna()].tolist() == [3, 7, 11]
    assert pd.Series(reasons["reason"]).dropna().tolist() == [
        "code_not_allowed",
        "value_out_of_range",
        "value_out_of_range",
    ]
