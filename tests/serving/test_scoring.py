"""The fast scoring path gives the pipeline's own probabilities, bit for bit, in any batch."""

from __future__ import annotations

import cProfile
import pstats
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from contracts.reviews import RAW_LABEL, RAW_TEXT
from features.reviews import NUMERIC_FEATURES, TEXT_CLEAN, build_features, featurize_texts
from serving.scoring import (
    CHECK_TEXTS,
    DirectLinearScorer,
    FastPipelineScorer,
    PipelineScorer,
    RowByRowScorer,
    UnsupportedPipelineError,
    compile_scorer,
    feature_frame,
    reference_probabilities,
)
from synthetic.reviews import generate_reviews
from training.models import build_baseline

TRAIN = generate_reviews(n=500, seed=5)
TEXTS = [*generate_reviews(n=120, seed=6, domain="products")["text"], *CHECK_TEXTS]


@pytest.fixture(scope="module")
def baseline() -> Pipeline:
    """The training baseline (TF-IDF + log1p/scaled numeric signals + logistic regression)."""
    return build_baseline({"min_df": 1}).fit(build_features(TRAIN), TRAIN[RAW_LABEL])


def test_feature_frame_equals_build_features() -> None:
    texts = list(CHECK_TEXTS)
    expected = build_features(pd.DataFrame({RAW_TEXT: texts}))
    pd.testing.assert_frame_equal(feature_frame(featurize_texts(texts)), expected)


def test_fast_path_equals_pipeline_alone_for_every_batch_size(
    baseline: Pipeline, tiny_pipeline: Pipeline
) -> None:
    for pipeline in (baseline, tiny_pipeline):
        expected = reference_probabilities(pipeline, 1, TEXTS)
        fast = FastPipelineScorer(pipeline, 1)
        for chunk in (1, 3, 32, len(TEXTS)):
            got = np.concatenate(
                [
                    fast.score(featurize_texts(TEXTS[i : i + chunk]))
                    for i in range(0, len(TEXTS), chunk)
                ]
            )
            assert np.array_equal(got, expected), (chunk, np.max(np.abs(got - expected)))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(texts=st.lists(st.text(max_size=200), min_size=1, max_size=12))
def test_fast_path_equals_pipeline_on_arbitrary_text(baseline: Pipeline, texts: list[str]) -> None:
    expected = reference_probabilities(baseline, 1, texts)
    assert np.array_equal(FastPipelineScorer(baseline, 1).score(featurize_texts(texts)), expected)


def test_compile_picks_the_fast_path_for_training_shaped_models(
    baseline: Pipeline, tiny_pipeline: Pipeline
) -> None:
    assert compile_scorer(baseline, 1).name == "direct"
    assert compile_scorer(tiny_pipeline, 1).name == "direct"
    text_only = build_baseline({"min_df": 1, "use_numeric": False}).fit(
        build_features(TRAIN), TRAIN[RAW_LABEL]
    )
    assert compile_scorer(text_only, 1).name == "direct"


def test_positive_index_follows_the_classes(baseline: Pipeline) -> None:
    p_one = FastPipelineScorer(baseline, 1).score(featurize_texts(TEXTS[:5]))
    p_zero = FastPipelineScorer(baseline, 0).score(featurize_texts(TEXTS[:5]))
    np.testing.assert_allclose(p_one + p_zero, 1.0)


def _select_clean_text(frame: pd.DataFrame) -> pd.Series:
    return frame[TEXT_CLEAN]


def test_an_unmirrored_pipeline_is_served_through_its_own_predict_proba() -> None:
    pipeline = Pipeline(
        [
            ("pick", FunctionTransformer(_select_clean_text)),
            ("tfidf", TfidfVectorizer()),
            ("clf", LogisticRegression()),
        ]
    ).fit(build_features(TRAIN), TRAIN[RAW_LABEL])
    with pytest.raises(UnsupportedPipelineError, match="ColumnTransformer"):
        FastPipelineScorer(pipeline, 1)

    scorer = compile_scorer(pipeline, 1)

    assert isinstance(scorer, PipelineScorer)
    expected = reference_probabilities(pipeline, 1, TEXTS[:20])
    assert np.array_equal(scorer.score(featurize_texts(TEXTS[:20])), expected)


class BatchDependentClassifier(ClassifierMixin, BaseEstimator):
    """Answers depend on the rest of the batch (centred on the batch mean): batching would lie."""

    def fit(self, X: Any, y: Any) -> BatchDependentClassifier:
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        length = X["n_chars"].to_numpy(dtype=float)
        centred = 1 / (1 + np.exp(-(length - length.mean() + 1) / 50))
        return np.column_stack([1 - centred, centred])


def test_a_batch_dependent_model_is_scored_row_by_row() -> None:
    model = BatchDependentClassifier().fit(None, None)

    scorer = compile_scorer(model, 1)

    assert isinstance(scorer, RowByRowScorer)
    expected = reference_probabilities(model, 1, TEXTS[:10])
    assert np.array_equal(scorer.score(featurize_texts(TEXTS[:10])), expected)


@pytest.mark.slow
def test_every_model_family_the_tuner_can_pick_gets_an_exact_scorer() -> None:
    from training.zoo import build_pipeline, family_names, to_servable

    small = {"svd_gbm": {"svd_components": 20, "max_iter": 50}}  # keeps the fit short
    features = build_features(TRAIN)
    for family in family_names():
        pipeline = build_pipeline(family, small.get(family), seed=3)
        model = to_servable(pipeline.fit(features, TRAIN[RAW_LABEL]))
        positive = list(model.classes_).index(1)
        scorer = compile_scorer(model, positive)
        texts = TEXTS[:48]
        expected = reference_probabilities(model, positive, texts)
        got = np.concatenate(
            [scorer.score(featurize_texts(texts[i : i + 16])) for i in range(0, len(texts), 16)]
        )
        assert np.array_equal(got, expected), family
        print(f"{family}: scoring path {scorer.name}")


# ---- the direct path: the fitted arithmetic without scikit-learn's per-call checks -------

# Reviews that clean to nothing, unseen words only, unicode of every kind, very long ones.
EDGE_TEXTS = [
    "",
    "<br /><br />",
    "&amp; &lt; &gt;",
    "!!! ??? ...",
    "\u200b\u2028\x00",
    "zzyzx qwxv plonk",
    "\u0645\u0645\u062a\u0627\u0632 \u0440\u0443\u0441\u0441\u043a\u0438\u0439 \u4e2d\u6587 \U0001f600",
    "good " * 5000,
    "x" * 20000,
    "Great film, but the ending... NOT good at all <br /> sooo disappointing?!",
]


def _variants() -> list[Pipeline]:
    """Training-shaped models that take the direct path, with its options switched."""
    features, labels = build_features(TRAIN), TRAIN[RAW_LABEL]
    return [
        build_baseline({"min_df": 1}).fit(features, labels),
        build_baseline({"min_df": 1, "sublinear_tf": True, "ngram_max": 1}).fit(features, labels),
        build_baseline({"min_df": 1, "use_numeric": False}).fit(features, labels),
    ]


@pytest.fixture(scope="module")
def variants() -> list[Pipeline]:
    return _variants()


def test_direct_path_equals_pipeline_alone_for_every_batch_size(
    variants: list[Pipeline], tiny_pipeline: Pipeline
) -> None:
    texts = [*TEXTS, *EDGE_TEXTS]
    for pipeline in [*variants, tiny_pipeline]:
        for positive in (1, 0):
            expected = reference_probabilities(pipeline, positive, texts)
            direct = DirectLinearScorer(pipeline, positive)
            for chunk in (1, 7, 64):
                got = np.concatenate(
                    [
                        direct.score(featurize_texts(texts[i : i + chunk]))
                        for i in range(0, len(texts), chunk)
                    ]
                )
                assert np.array_equal(got, expected), (chunk, np.max(np.abs(got - expected)))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    texts=st.lists(
        st.one_of(
            st.text(max_size=300),
            st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
            st.lists(st.sampled_from(["good", "bad", "not", "film", "!!", "<br />", "sooo"])).map(
                " ".join
            ),
            st.sampled_from(EDGE_TEXTS),
        ),
        min_size=1,
        max_size=16,
    )
)
def test_direct_path_equals_pipeline_on_arbitrary_text(
    variants: list[Pipeline], texts: list[str]
) -> None:
    for pipeline in variants:
        expected = reference_probabilities(pipeline, 1, texts)
        got = DirectLinearScorer(pipeline, 1).score(featurize_texts(texts))
        assert np.array_equal(got, expected), np.max(np.abs(got - expected))


def test_direct_path_skips_scikit_learn_input_validation(baseline: Pipeline) -> None:
    columns = featurize_texts(TEXTS[:8])

    def calls(scorer: Any) -> dict[str, int]:
        profile = cProfile.Profile()
        profile.runcall(scorer.score, columns)
        stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
        counts: dict[str, int] = {}
        for (_file, _line, function), (_cc, ncalls, *_rest) in stats.items():
            counts[function] = counts.get(function, 0) + ncalls
        return counts

    fast = calls(FastPipelineScorer(baseline, 1))
    direct = calls(DirectLinearScorer(baseline, 1))

    assert fast.get("check_array", 0) >= 4  # the stacking, each step, the classifier
    assert direct.get("check_array", 0) == 0
    assert direct.get("validate_data", 0) == 0
    assert sum(direct.values()) * 2 < sum(fast.values())


def test_models_the_direct_path_does_not_mirror_are_refused() -> None:
    features, labels = build_features(TRAIN), TRAIN[RAW_LABEL]
    numeric_first = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        ("numeric", StandardScaler(), list(NUMERIC_FEATURES)),
                        ("text", TfidfVectorizer(lowercase=False), TEXT_CLEAN),
                    ]
                ),
            ),
            ("classifier", LogisticRegression(max_iter=300)),
        ]
    ).fit(features, labels)

    with pytest.raises(UnsupportedPipelineError, match="first branch"):
        DirectLinearScorer(numeric_first, 1)
    assert compile_scorer(numeric_first, 1).name == "fast"
