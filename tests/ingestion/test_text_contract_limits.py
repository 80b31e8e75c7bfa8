"""A text use case's rows are held to its own contract, not to the review one.

validate_raw's text checks take the text column, the label column, the length limit and
the Pandera schema from the run's use case contract; a use case of one's own with a
50-character limit quarantines a 60-character text that the review contract would accept.
"""

from __future__ import annotations

import types
from pathlib import Path

import pandas as pd
import pandera.pandas as pa
import pytest

from contracts import reviews
from ingestion.expectations import run_checkpoint
from ingestion.rowchecks import (
    accepted_frame,
    apply_contract,
    check_rows,
    max_text_chars,
    quarantine_frame,
)
from ingestion.sources import SourceSpec, load_policy


def _short_text_contract(limit: int | None = 50) -> types.ModuleType:
    contract = types.ModuleType("tickets_contract")
    contract.RAW_COLUMNS = ("body",)  # type: ignore[attr-defined]
    contract.RAW_LABEL = "urgent"  # type: ignore[attr-defined]
    checks = [pa.Check.str_length(1, limit)] if limit is not None else []
    contract.raw_schema = pa.DataFrameSchema(  # type: ignore[attr-defined]
        {
            "body": pa.Column(str, nullable=False, checks=checks),
            "urgent": pa.Column("int64", pa.Check.isin([0, 1])),
        }
    )
    if limit is not None:
        contract.MAX_TEXT_CHARS = limit  # type: ignore[attr-defined]
    return contract


SPEC = SourceSpec.from_entry(
    {
        "name": "tickets",
        "text_column": "message",
        "label_column": "priority",
        "label_map": {"high": 1, "low": 0},
    }
)


def _raw() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "message": ["printer on fire", "x" * 60, "y" * 49],
            "priority": ["high", "low", "low"],
        }
    )


def test_the_use_case_contract_sets_the_text_limit_and_the_output_columns() -> None:
    contract = _short_text_contract(50)
    rows = apply_contract(check_rows(_raw(), SPEC, load_policy(), contract), contract)
    assert rows["reason"].fillna("ok").tolist() == ["ok", "text_too_long", "ok"]
    assert "at most 50" in rows.loc[1, "detail"]
    accepted = accepted_frame(rows, contract)
    assert list(accepted.columns) == ["body", "urgent", "source", "source_row"]
    assert accepted["body"].tolist() == ["printer on fire", "y" * 49]
    assert quarantine_frame(rows)["source_row"].tolist() == [1]

    # The same rows under the review contract: 60 characters are far below its limit.
    review_rows = check_rows(_raw(), SPEC, load_policy(), reviews)
    assert review_rows["reason"].isna().all()


def test_a_text_contract_without_a_limit_quarantines_no_length() -> None:
    contract = _short_text_contract(None)
    assert max_text_chars(contract) is None
    rows = check_rows(_raw(), SPEC, load_policy(), contract)
    assert rows["reason"].isna().all()


def test_contract_violations_name_the_use_case_schema() -> None:
    """A schema stricter than the row checks quarantines as contract_violation, naming it."""
    contract = _short_text_contract(50)
    contract.MAX_TEXT_CHARS = 100  # type: ignore[attr-defined]  # row check looser than schema
    rows = apply_contract(check_rows(_raw(), SPEC, load_policy(), contract), contract)
    assert rows["reason"].fillna("ok").tolist() == ["ok", "contract_violation", "ok"]
    assert "tickets_contract.raw_schema" in rows.loc[1, "detail"]


@pytest.mark.slow
def test_great_expectations_length_limit_follows_the_run_parameters(tmp_path: Path) -> None:
    """The derived suite's length expectation reads `max_text_chars` from the run's contract."""
    frame = _raw()
    loose = run_checkpoint([(SPEC, frame)], tmp_path / "loose")
    strict = run_checkpoint([(SPEC, frame)], tmp_path / "strict", parameters={"max_text_chars": 50})

    def length_failures(outcome: object) -> list[dict]:
        return [
            f
            for f in outcome.failures  # type: ignore[attr-defined]
            if f["expectation"] == "expect_column_value_lengths_to_be_between"
        ]

    assert not length_failures(loose)
    assert length_failures(strict), strict.failures
