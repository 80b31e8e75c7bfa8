"""The GE suites, sources.yaml, the quarantine policy and the Pandera contract say the same thing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from contracts import reviews as reviews_contract
from contracts.reviews import MAX_TEXT_CHARS, RAW_LABEL, RAW_TEXT, load_sources, raw_schema
from contracts.sources import source_use_case
from ingestion.expectations import (
    SUITES_DIR,
    load_checkpoint_config,
    load_suite,
    run_checkpoint,
    suite_columns,
)
from ingestion.rowchecks import FRAME_COLUMNS, apply_contract, check_policy
from ingestion.sources import SourceSpec, load_policy

# The text-source checks below; tabular suites are checked against their own contract
# (tests/ingestion/test_credit_suite.py).
SUITE_SOURCES = {
    spec["expectation_suite"]: key
    for key, spec in load_sources().items()
    if "expectation_suite" in spec and source_use_case(spec) == "reviews"
}


def _expectations(suite: dict, kind: str) -> list[dict]:
    return [e for e in suite["expectations"] if e["type"] == kind]


def test_every_suite_file_belongs_to_a_source_and_back() -> None:
    on_disk = {p.stem for p in SUITES_DIR.glob("*.json")}
    named = {spec.get("expectation_suite") for spec in load_sources().values()}
    assert on_disk == named
    review_sources = {k for k, spec in load_sources().items() if source_use_case(spec) == "reviews"}
    assert set(SUITE_SOURCES.values()) == review_sources


@pytest.mark.parametrize("suite_name", sorted(SUITE_SOURCES))
def test_suite_names_the_columns_of_the_pandera_raw_schema(suite_name: str) -> None:
    spec = SourceSpec.from_entry({"source": SUITE_SOURCES[suite_name]})
    suite = load_suite(suite_name)
    to_canonical = {spec.text_column: RAW_TEXT, spec.label_column: RAW_LABEL}
    columns = suite_columns(suite)
    assert columns <= set(to_canonical), f"{suite_name} names columns the mapping does not know"
    assert {to_canonical[c] for c in columns} == set(raw_schema.columns)
    existing = {e["kwargs"]["column"] for e in _expectations(suite, "expect_column_to_exist")}
    assert existing == set(to_canonical)
    assert all(
        e.get("severity") == "critical" for e in _expectations(suite, "expect_column_to_exist")
    )


@pytest.mark.parametrize("suite_name", sorted(SUITE_SOURCES))
def test_suite_label_domain_and_length_bound_match_the_mapping_and_contract(
    suite_name: str,
) -> None:
    spec = SourceSpec.from_entry({"source": SUITE_SOURCES[suite_name]})
    suite = load_suite(suite_name)
    (domain,) = _expectations(suite, "expect_column_values_to_be_in_set")
    assert domain["kwargs"]["column"] == spec.label_column
    assert set(domain["kwargs"]["value_set"]) == set(spec.label_map) | set(spec.expected_unmapped)
    (lengths,) = _expectations(suite, "expect_column_value_lengths_to_be_between")
    assert lengths["kwargs"]["max_value"] == {"$PARAMETER": "max_text_chars"}
    assert lengths["kwargs"]["min_value"] == 1
    text_check = raw_schema.columns[RAW_TEXT].checks[0]
    assert text_check.statistics["min_value"] == 1
    assert text_check.statistics["max_value"] == MAX_TEXT_CHARS


def test_checkpoint_config_resolves_parameters_from_the_contract() -> None:
    config = load_checkpoint_config()
    assert config["suite_parameters"] == {"max_text_chars": MAX_TEXT_CHARS}
    assert config["fail_on_severity"] == "critical"
    assert [a["type"] for a in config["checkpoint"]["actions"]] == ["update_data_docs"]


def test_quarantine_policy_lists_the_implemented_reasons_in_order() -> None:
    policy = load_policy()
    check_policy(policy)
    assert policy.excluded_reasons == ["label_unmapped"]
    assert {"", "NA", "null"} <= policy.missing_label_values


def test_pandera_contract_quarantines_what_the_row_checks_let_through() -> None:
    """If raw_schema is stricter than the row checks, its row failures land in quarantine."""
    rows = pd.DataFrame(
        {
            "source": ["s", "s", "s"],
            "source_row": [0, 1, 2],
            "text": ["fine", "y" * (MAX_TEXT_CHARS + 5), "also fine"],
            "raw_label": ["1", "1", "2"],
            "label": pd.array([1, 1, 2], dtype="Int64"),
            "reason": [None, None, None],
            "detail": [None, None, None],
        },
        columns=FRAME_COLUMNS,
    )
    checked = apply_contract(rows, reviews_contract)
    assert checked["reason"].tolist() == [None, "contract_violation", "contract_violation"]
    assert "str_length" in checked.loc[1, "detail"]
    assert "isin" in checked.loc[2, "detail"]


@pytest.mark.slow
def test_suites_build_in_great_expectations_and_critical_failures_block(tmp_path: Path) -> None:
    """Every expectation of every file is a valid GE expectation; a missing column is critical."""
    good = SourceSpec.from_entry({"source": "imdb"})
    frame = pd.DataFrame(
        {"review": ["fine film", "bad film"], "sentiment": ["positive", "negative"]}
    )
    drifted = SourceSpec.from_entry({"source": "kindle", "name": "drifted"})
    outcome = run_checkpoint(
        [(good, frame), (drifted, pd.DataFrame({"reviewText": ["ok"], "rating": ["5"]}))],
        tmp_path / "docs",
    )
    assert not [f for f in outcome.failures if f["source"] == "imdb"]
    blocking = {(f["source"], f["expectation"], f["column"]) for f in outcome.blocking}
    assert ("drifted", "expect_column_to_exist", "overall") in blocking
    assert all(f["severity"] == "critical" for f in outcome.blocking)
    n_expectations = len(load_suite("raw_imdb")["expectations"]) + len(
        load_suite("raw_kindle")["expectations"]
    )
    assert outcome.evaluated == n_expectations
    index = (tmp_path / "docs" / "index.html").read_text()
    assert "raw_imdb" in index and "raw_kindle" in index
