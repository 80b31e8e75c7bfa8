"""The credit contract: fingerprint, schemas, row reasons and the request model agree."""

from __future__ import annotations

import math

import pandas as pd
import pydantic
import pytest

import contracts.credit as contract
from features.credit import BILL_AMT, FEATURE_COLUMNS, PAY_STATUS, RAW_COLUMNS, build_features
from synthetic.credit import COLUMNS, LABEL_COLUMN, generate


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Synthetic UCI-layout rows with the canonical raw column names."""
    mapping = {**dict(zip(COLUMNS[1:-1], RAW_COLUMNS, strict=True)), LABEL_COLUMN: "label"}
    return frame.rename(columns=mapping).drop(columns=["ID"])


def test_feature_fingerprint_matches_the_recorded_version() -> None:
    actual = contract.feature_fingerprint()
    assert actual == contract.FEATURE_FINGERPRINT, (
        f"features.credit changed its output (fingerprint {actual}, recorded "
        f"{contract.FEATURE_FINGERPRINT}). Bump FEATURE_CONTRACT_VERSION in contracts/credit.py "
        "and record the new FEATURE_FINGERPRINT."
    )


def test_fingerprint_sees_a_changed_feature(monkeypatch: pytest.MonkeyPatch) -> None:
    import features.credit as module

    monkeypatch.setattr(module, "PAY_RATIO_CAP", 5.0)
    assert contract.feature_fingerprint() != contract.FEATURE_FINGERPRINT


def test_synthetic_rows_pass_the_raw_and_feature_schemas() -> None:
    raw = canonical(generate(500, seed=2))
    contract.raw_schema.validate(raw)
    assert contract.row_reasons(raw)["reason"].isna().all()
    features = build_features(raw)
    contract.feature_schema.validate(features)
    assert set(contract.feature_schema.columns) == set(FEATURE_COLUMNS)


def test_training_frame_schema_needs_label_and_split() -> None:
    raw = canonical(generate(20, seed=4))
    frame = build_features(raw).assign(label=raw["label"].to_numpy(), split="train")
    contract.training_frame_schema.validate(frame)
    with pytest.raises(Exception, match="split"):
        contract.training_frame_schema.validate(frame.drop(columns=["split"]))


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("limit_bal", None, "value_missing"),
        ("age", "forty", "value_not_numeric"),
        ("limit_bal", 0.0, "value_out_of_range"),
        ("limit_bal", 50_000_000.0, "value_out_of_range"),
        ("age", 12, "value_out_of_range"),
        ("age", 30.5, "value_out_of_range"),
        ("pay_amt_3", -5.0, "value_out_of_range"),
        ("education", 7, "code_not_allowed"),
        ("sex", 0, "code_not_allowed"),
        ("pay_status_1", 10, "code_not_allowed"),
        ("pay_status_4", -3, "code_not_allowed"),
    ],
)
def test_row_reasons_name_the_breach(column: str, value: object, reason: str) -> None:
    raw = canonical(generate(3, seed=5)).astype(object)
    raw.loc[1, column] = value
    reasons = contract.row_reasons(raw)
    assert reasons["reason"].tolist() == [None, reason, None]
    assert column in reasons.loc[1, "detail"]


def test_undocumented_codes_are_inside_the_contract() -> None:
    raw = canonical(generate(4, seed=6))
    raw["education"] = [0, 5, 6, 4]
    raw["marriage"] = [0, 1, 2, 3]
    raw[list(PAY_STATUS)] = -2
    raw[list(BILL_AMT)] = -1_000.0
    assert contract.row_reasons(raw)["reason"].isna().all()
    contract.raw_schema.validate(raw)


def test_pandera_and_row_reasons_agree_on_a_bad_row() -> None:
    raw = canonical(generate(3, seed=7))
    raw.loc[2, "marriage"] = 4
    with pytest.raises(Exception, match="marriage"):
        contract.raw_schema.validate(raw, lazy=True)
    assert contract.row_reasons(raw)["reason"].tolist() == [None, None, "code_not_allowed"]


def test_predict_request_has_every_raw_field_with_its_range() -> None:
    schema = contract.PredictRequest.model_json_schema()
    assert list(schema["properties"]) == list(RAW_COLUMNS)
    assert set(schema["required"]) == set(RAW_COLUMNS)
    limit = schema["properties"]["limit_bal"]
    assert (limit["minimum"], limit["maximum"]) == (1_000.0, 10_000_000.0)
    assert schema["properties"]["education"]["enum"] == [0, 1, 2, 3, 4, 5, 6]
    assert schema["properties"]["pay_status_1"]["enum"] == list(range(-2, 10))


def test_predict_request_rejects_out_of_contract_values() -> None:
    good = {name: spec.example for name, spec in contract.RAW_FIELDS.items()}
    request = contract.PredictRequest(**good)
    assert request.to_raw_row() == good
    # CSV cells arrive as strings (the Spark job validates with this model too).
    assert contract.PredictRequest(**{**good, "sex": "1", "limit_bal": "2e+05"}).sex == 1
    for bad in (
        {"education": 7},
        {"age": 17},
        {"limit_bal": math.nan},
        {"age": 30.5},
        {"sex": "x"},
    ):
        with pytest.raises(pydantic.ValidationError):
            contract.PredictRequest(**{**good, **bad})
    with pytest.raises(pydantic.ValidationError):
        contract.PredictRequest(**good, label=1)


def test_response_carries_reasons() -> None:
    response = contract.PredictResponse(
        label=1,
        label_name=contract.LABEL_NAMES[1],
        probability=0.7,
        model_version="3",
        request_id="r",
        reasons=[{"feature": "delay_m1", "contribution": 0.9, "value": 2.0}],
    )
    assert response.reasons[0].feature == "delay_m1"
    assert contract.LABEL_NAMES == {0: "no_default", 1: "default"}
