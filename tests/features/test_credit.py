"""Unit tests of the credit features, hostile rows included."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features.credit import (
    BILL_AMT,
    FEATURE_COLUMNS,
    FEATURE_DTYPES,
    NEVER_DELINQUENT,
    PAY_AMT,
    PAY_RATIO_CAP,
    PAY_STATUS,
    RAW_COLUMNS,
    MissingRawColumnsError,
    build_features,
)
from synthetic.credit import generate


def client(**overrides: object) -> dict[str, object]:
    """A plain client: limit 100k, bills 50k, payments 5k, all months revolving."""
    row: dict[str, object] = {
        "limit_bal": 100_000.0,
        "sex": 1,
        "education": 2,
        "marriage": 2,
        "age": 30,
        **{c: 0 for c in PAY_STATUS},
        **{c: 50_000.0 for c in BILL_AMT},
        **{c: 5_000.0 for c in PAY_AMT},
    }
    row.update(overrides)
    return row


def one(**overrides: object) -> dict[str, object]:
    return build_features(pd.DataFrame([client(**overrides)])).iloc[0].to_dict()


def test_output_shape_index_and_dtypes() -> None:
    df = pd.DataFrame([client(), client(limit_bal=0.0), client(age=None)], index=[7, 3, 11])
    out = build_features(df)
    assert list(out.index) == [7, 3, 11]
    assert tuple(out.columns) == FEATURE_COLUMNS
    assert {k: str(v) for k, v in out.dtypes.items()} == FEATURE_DTYPES


def test_empty_frame_keeps_columns_and_dtypes() -> None:
    out = build_features(pd.DataFrame(columns=list(RAW_COLUMNS)))
    assert len(out) == 0
    assert {k: str(v) for k, v in out.dtypes.items()} == FEATURE_DTYPES


def test_missing_column_is_named() -> None:
    df = pd.DataFrame([client()]).drop(columns=["bill_amt_4", "age"])
    with pytest.raises(MissingRawColumnsError) as raised:
        build_features(df)
    message = str(raised.value)
    assert "'age'" in message and "'bill_amt_4'" in message
    assert isinstance(raised.value, KeyError)


def test_utilisation_per_month_and_its_trend() -> None:
    # Bills rise from 10k (oldest, month 6) to 60k (most recent, month 1) on a 100k limit.
    bills = {f"bill_amt_{m}": (7 - m) * 10_000.0 for m in range(1, 7)}
    row = one(**bills)
    assert row["util_m1"] == pytest.approx(0.6)
    assert row["util_m6"] == pytest.approx(0.1)
    assert row["util_mean"] == pytest.approx(0.35)
    assert row["util_max"] == pytest.approx(0.6)
    # +0.1 of the limit per month towards the present: a positive slope.
    assert row["util_trend"] == pytest.approx(0.1)
    falling = one(**{f"bill_amt_{m}": m * 10_000.0 for m in range(1, 7)})
    assert falling["util_trend"] == pytest.approx(-0.1)


def test_zero_and_negative_limits_give_nan_utilisation_not_inf() -> None:
    for limit in (0.0, -10_000.0):
        row = one(limit_bal=limit)
        assert all(math.isnan(row[f"util_m{m}"]) for m in range(1, 7))
        assert math.isnan(row["util_trend"]) and math.isnan(row["util_max"])
        assert row["months_over_limit"] == 0


def test_negative_bills_are_a_credit_balance() -> None:
    row = one(**{c: -2_000.0 for c in BILL_AMT}, **{c: 0.0 for c in PAY_AMT})
    assert row["util_m1"] == pytest.approx(-0.02)
    # Nothing was due: each month counts as fully paid, no month without payment.
    assert row["pay_ratio_m1"] == 1.0 and row["paid_to_billed"] == 1.0
    assert row["months_no_payment"] == 0
    assert row["log_bill_amt_mean"] < 0


def test_payment_ratio_pairs_a_payment_with_the_previous_statement() -> None:
    # Paid 10k in month 1 against the 40k statement of month 2.
    row = one(bill_amt_1=80_000.0, bill_amt_2=40_000.0, pay_amt_1=10_000.0)
    assert row["pay_ratio_m1"] == pytest.approx(0.25)
    assert row["pay_ratio_m2"] == pytest.approx(0.1)  # 5k against 50k
    huge = one(pay_amt_1=10_000_000.0)
    assert huge["pay_ratio_m1"] == PAY_RATIO_CAP


def test_repayment_status_features() -> None:
    statuses = dict(zip(PAY_STATUS, (2, 0, -1, 3, -2, 1), strict=True))
    row = one(**statuses)
    assert [row[f"delay_m{m}"] for m in range(1, 7)] == [2, 0, 0, 3, 0, 1]
    assert row["worst_delay"] == 3
    assert row["months_delinquent"] == 3
    assert row["months_since_delinquent"] == 1
    assert row["months_paid_duly"] == 1
    assert row["months_revolving"] == 1
    assert row["months_no_consumption"] == 1
    # Recent three months average 2/3, older three 4/3.
    assert row["delay_trend"] == pytest.approx(2 / 3 - 4 / 3)


def test_never_delinquent_and_old_delinquency() -> None:
    assert one()["months_since_delinquent"] == NEVER_DELINQUENT
    assert one(pay_status_5=2)["months_since_delinquent"] == 5


@pytest.mark.parametrize(
    ("code", "level"), [(0, "other"), (5, "other"), (6, "other"), (4, "other")]
)
def test_undocumented_education_codes_map_to_other_and_are_counted(code: int, level: str) -> None:
    row = one(education=code)
    assert row[f"edu_{level}"] == 1
    assert row["edu_graduate"] + row["edu_university"] + row["edu_high_school"] == 0
    assert row["n_undocumented_codes"] == (0 if code == 4 else 1)


def test_undocumented_marriage_code_maps_to_other() -> None:
    row = one(marriage=0, education=5)
    assert row["marriage_other"] == 1 and row["marriage_single"] == 0
    assert row["n_undocumented_codes"] == 2
    assert one(marriage=3)["n_undocumented_codes"] == 0


def test_undocumented_pay_codes_mean_no_delay() -> None:
    row = one(**{c: -2 for c in PAY_STATUS})
    assert row["months_no_consumption"] == 6 and row["worst_delay"] == 0
    assert row["months_delinquent"] == 0


def test_status_outside_the_codebook_is_unknown_not_a_delay() -> None:
    row = one(pay_status_1=11, pay_status_2=-3)
    assert math.isnan(row["delay_m1"]) and math.isnan(row["delay_m2"])
    assert row["months_delinquent"] == 0
    assert row["worst_delay"] == 0


def test_nan_strings_and_inf_give_a_row_with_nan_where_unknown() -> None:
    row = one(limit_bal="abc", age=None, bill_amt_2=float("nan"), pay_amt_1=float("inf"))
    assert math.isnan(row["credit_limit"]) and math.isnan(row["age_years"])
    assert math.isnan(row["util_m1"])
    assert math.isnan(row["pay_ratio_m1"])  # both the payment and its statement are unknown
    assert not math.isnan(row["pay_ratio_mean"])  # the other months are known


def test_an_all_missing_row_does_not_raise() -> None:
    df = pd.DataFrame([{c: None for c in RAW_COLUMNS}])
    row = build_features(df).iloc[0]
    assert row["months_delinquent"] == 0 and row["months_since_delinquent"] == NEVER_DELINQUENT
    assert math.isnan(row["util_mean"]) and math.isnan(row["paid_to_billed"])
    assert math.isnan(row["util_trend"])


def test_no_infinite_values_on_hostile_rows() -> None:
    df = pd.DataFrame(
        [
            client(limit_bal=1e-300, **{c: 1e300 for c in BILL_AMT}),
            client(**{c: 0.0 for c in BILL_AMT}, **{c: 0.0 for c in PAY_AMT}),
            client(**{c: -1e9 for c in BILL_AMT}),
        ]
    )
    values = build_features(df).to_numpy(dtype="float64")
    assert not np.isinf(values).any()


def test_no_feature_reuses_a_raw_column_name() -> None:
    # The Spark job writes raw columns and features side by side.
    assert not set(FEATURE_COLUMNS) & set(RAW_COLUMNS)


def test_extra_columns_are_ignored_and_input_not_modified() -> None:
    df = pd.DataFrame([client(ID=5, label=1)])
    before = df.copy()
    out = build_features(df)
    pd.testing.assert_frame_equal(df, before)
    assert "label" not in out.columns and "ID" not in out.columns


def test_deterministic_and_row_independent() -> None:
    raw = generate(300, seed=3).rename(columns=_uci_to_canonical())
    whole = build_features(raw)
    again = build_features(raw)
    pd.testing.assert_frame_equal(whole, again)
    parts = pd.concat([build_features(raw.iloc[:100]), build_features(raw.iloc[100:])])
    pd.testing.assert_frame_equal(whole, parts)


def _uci_to_canonical() -> dict[str, str]:
    # The generator writes the UCI header in the order of the canonical raw columns.
    from synthetic.credit import COLUMNS, LABEL_COLUMN

    return {**dict(zip(COLUMNS[1:-1], RAW_COLUMNS, strict=True)), LABEL_COLUMN: "label"}


def test_synthetic_clients_are_seeded_and_informative() -> None:
    from sklearn.metrics import roc_auc_score

    from synthetic.credit import COLUMNS, LABEL_COLUMN

    first, again = generate(2000, seed=9), generate(2000, seed=9)
    pd.testing.assert_frame_equal(first, again)
    assert tuple(first.columns) == COLUMNS
    assert not first.equals(generate(2000, seed=10))
    rate = first[LABEL_COLUMN].mean()
    assert 0.1 < rate < 0.45
    features = build_features(first.rename(columns=_uci_to_canonical()))
    # Delinquency must carry signal about default, as in the real data.
    assert roc_auc_score(first[LABEL_COLUMN], features["worst_delay"]) > 0.6
    assert set(first["EDUCATION"]) >= {0, 5, 6}
    assert (first[list(BILL_AMT_UCI)] < 0).any().any()


def test_synthetic_shift_moves_towards_young_high_utilisation_clients() -> None:
    base = build_features(generate(2000, seed=1).rename(columns=_uci_to_canonical()))
    shifted = build_features(generate(2000, seed=1, shift=1.0).rename(columns=_uci_to_canonical()))
    assert shifted["age_years"].mean() < base["age_years"].mean() - 5
    assert shifted["util_mean"].mean() > base["util_mean"].mean()
    assert shifted["credit_limit"].median() < base["credit_limit"].median()


BILL_AMT_UCI = tuple(f"BILL_AMT{m}" for m in range(1, 7))
