"""The tabular fast paths give the pipeline's answers exactly, or are not used.

`features.credit.featurize_rows` against `build_features`, `TabularPipelineScorer` against
`Pipeline.predict_proba` one row at a time, its reason codes against the registry's explain
hook, for every model family of the credit search space; and `compile_scorer` refusing a fast
path that disagrees in the last bit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from contracts.credit import EXAMPLE_ROWS, PredictRequest
from contracts.sources import load_sources, source_columns
from features.credit import FEATURE_COLUMNS, RAW_COLUMNS, build_features, featurize_rows
from serving import tabular_scoring
from serving.scoring import compile_scorer, reference_probabilities
from serving.tabular_scoring import TabularPipelineScorer, fast_reasons, same_columns
from serving.usecase import served_use_case
from synthetic.credit import generate

FAMILIES: dict[str, dict[str, Any] | None] = {
    "lightgbm-sigmoid": {"n_estimators": 40},
    "lightgbm-isotonic": {"n_estimators": 40, "calibration": "isotonic"},
    "lightgbm-balanced": {"n_estimators": 40, "class_weight": "balanced"},
    "logreg-scaled": None,
    "logreg-binned": {"encoding": "binned"},
    "hist_gbm": {"max_iter": 30},
    "forest": {"n_estimators": 20},
}


@pytest.fixture(scope="module")
def clients() -> tuple[pd.DataFrame, pd.Series, list[dict[str, Any]]]:
    entry = load_sources()["credit_synthetic"]
    mapping = source_columns(entry, RAW_COLUMNS)
    frame = generate(1500, seed=5)
    raw = frame.rename(columns={f: c for c, f in mapping.items()})[list(RAW_COLUMNS)]
    rows: list[dict[str, Any]] = []
    for record in raw.iloc[1200:].to_dict("records"):
        try:
            rows.append(PredictRequest.model_validate(record).model_dump())
        except ValueError:
            continue
    rows.extend(PredictRequest.model_validate(r).model_dump() for r in EXAMPLE_ROWS)
    return raw.iloc[:1200], frame[entry["label_column"]].iloc[:1200], rows


def _fit(family: str, raw: pd.DataFrame, labels: pd.Series) -> Any:
    from training.zoo import build_pipeline, layout_for, search_spaces_for, to_servable

    name = family.split("-")[0]
    model = build_pipeline(
        name, FAMILIES[family], spaces=search_spaces_for("credit"), layout=layout_for("credit")
    )
    return to_servable(model.fit(build_features(raw), labels))


def _frame_columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    frame = build_features(pd.DataFrame.from_records(rows, columns=list(RAW_COLUMNS)))
    return {name: frame[name].tolist() for name in FEATURE_COLUMNS}


def test_featurize_rows_is_build_features_bit_for_bit(clients: Any) -> None:
    _, _, rows = clients
    awkward = [
        {**rows[0], "limit_bal": None, "bill_amt_3": None},
        {**rows[1], "age": 0, "education": 7, "pay_status_2": 12},
        {**rows[2], "limit_bal": 0.0, "pay_amt_1": 1e308, "bill_amt_2": 1e-308},
    ]
    for batch in (rows, rows[:1], awkward, [awkward[0]]):
        fast = featurize_rows(batch)
        assert fast is not None
        assert same_columns(fast, _frame_columns(batch), FEATURE_COLUMNS)


def test_featurize_rows_declines_what_it_does_not_mirror(clients: Any) -> None:
    _, _, rows = clients
    assert featurize_rows([{**rows[0], "limit_bal": "120000"}]) is None
    assert featurize_rows([{**rows[0], "sex": True}]) is None
    assert featurize_rows([{**rows[0], "age": np.float64(30.0)}]) is None


def test_same_columns_sees_the_last_bit_and_the_type() -> None:
    base = {"a": [1.0, float("nan")], "b": [1, 2]}
    assert same_columns(base, {"a": [1.0, float("nan")], "b": [1, 2]}, ["a", "b"])
    assert not same_columns(
        base, {"a": [math.nextafter(1.0, 2.0), float("nan")], "b": [1, 2]}, ["a"]
    )
    assert not same_columns(base, {"a": [1.0, 0.0], "b": [1, 2]}, ["a"])
    assert not same_columns(base, {"a": [1.0, float("nan")], "b": [1.0, 2.0]}, ["b"])


def test_served_credit_use_case_computes_features_without_a_frame() -> None:
    uc = served_use_case("credit")
    assert uc.featurize.__qualname__.startswith("row_featurizer")
    assert uc.check_items, "the credit contract's EXAMPLE_ROWS are the self-check rows"


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fast_scorer_and_reasons_equal_the_pipeline(family: str, clients: Any) -> None:
    raw, labels, rows = clients
    model = _fit(family, raw, labels)
    uc = served_use_case("credit")
    scorer = compile_scorer(model, 1, use_case=uc)
    # Whatever path compile_scorer keeps answers exactly, and every family takes a fast one: a
    # model whose own batch answers differ from its one-row answers in the last bit (a linear
    # model: BLAS) is served row by row on numpy.
    assert scorer.name.startswith("tabular-fast")
    expected = reference_probabilities(model, 1, rows, uc)
    columns = uc.featurize(rows)
    for size in (1, 7, len(rows)):
        got = np.concatenate(
            [
                scorer.score({n: columns[n][i : i + size] for n in FEATURE_COLUMNS})
                for i in range(0, len(rows), size)
            ]
        )
        assert np.array_equal(got, expected), family
    feature_rows = list(zip(*(columns[n] for n in uc.feature_columns), strict=True))
    reasons = fast_reasons(scorer, feature_rows)
    if family.startswith("lightgbm"):
        assert reasons is not None
        frame = uc.feature_frame(columns)
        assert reasons == uc.explain(model, frame)
        assert any(len(r) == 3 for r in reasons)
    else:
        assert reasons is None  # the explain hook answers for the other families


@pytest.mark.slow
def test_a_fast_path_that_disagrees_is_not_used(
    clients: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, labels, _ = clients
    model = _fit("lightgbm-sigmoid", raw, labels)
    uc = served_use_case("credit")
    assert compile_scorer(model, 1, use_case=uc).name == "tabular-fast"

    exact_score = TabularPipelineScorer.score

    def off_by_one_ulp(self: TabularPipelineScorer, columns: Any) -> np.ndarray:
        return np.nextafter(exact_score(self, columns), 2.0)

    monkeypatch.setattr(TabularPipelineScorer, "score", off_by_one_ulp)
    assert compile_scorer(model, 1, use_case=uc).name != "tabular-fast"
    monkeypatch.setattr(TabularPipelineScorer, "score", exact_score)

    exact_contributions = TabularPipelineScorer.contributions

    def shifted(self: TabularPipelineScorer, feature_rows: Any) -> np.ndarray:
        return exact_contributions(self, feature_rows) * (1 + 1e-12)

    monkeypatch.setattr(TabularPipelineScorer, "contributions", shifted)
    scorer = compile_scorer(model, 1, use_case=uc)
    assert scorer.name == "tabular-fast"
    assert fast_reasons(scorer, [tuple(range(len(FEATURE_COLUMNS)))]) is None


def test_a_featurizer_that_disagrees_is_not_used(clients: Any) -> None:
    _, _, rows = clients

    def frame_path(items: Any) -> dict[str, list[Any]]:
        return _frame_columns(list(items))

    def wrong(items: Any) -> dict[str, list[Any]] | None:
        out = featurize_rows(list(items))
        assert out is not None
        out["util_mean"] = [v + 1e-9 for v in out["util_mean"]]
        return out

    chosen = tabular_scoring.row_featurizer(wrong, frame_path, FEATURE_COLUMNS, rows[:5])
    assert chosen is frame_path
    kept = tabular_scoring.row_featurizer(featurize_rows, frame_path, FEATURE_COLUMNS, rows[:5])
    assert kept is not frame_path
