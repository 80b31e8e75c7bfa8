"""The model zoo: every family builds from YAML, fits, and loads where `training` cannot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfTransformer

from features.reviews import FEATURE_COLUMNS
from training.data import feature_frame, labels, split_frames
from training.zoo import (
    SEARCH_SPACES,
    LogCountRatio,
    ZooError,
    build_pipeline,
    family_names,
    family_space,
    load_search_spaces,
    non_servable_components,
    to_servable,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PINS = ["scikit-learn", "numpy", "scipy"]  # given, so MLflow does not infer them in a subprocess
# Small enough for 900 training rows; everything else is each family's default.
TINY = {"svd_gbm": {"svd_components": 20, "max_iter": 50}}
TEXTS = [
    "An absolute masterpiece, I loved every minute!!",
    "Dull, predictable and far too long. Avoid.",
    "<b>Not bad</b> at all... the cast was great?",
    "",
]


def test_the_zoo_has_the_required_families() -> None:
    names = family_names()
    assert len(names) >= 5
    assert {"logreg", "nbsvm", "linear_svm", "naive_bayes", "sgd_elasticnet", "svd_gbm"} <= set(
        names
    )
    for name in names:
        space = family_space(name)
        assert space.summary and space.search, name
        # word and character n-grams are search dimensions of the linear families
    for name in ("logreg", "nbsvm", "linear_svm"):
        assert {"word_ngram_max", "char_ngram_max"} <= set(family_space(name).search)


@pytest.mark.parametrize("use_case", ["reviews", "credit"])
def test_class_weighting_is_a_search_dimension_of_every_family(use_case: str) -> None:
    for name in family_names(use_case=use_case):
        dimension = family_space(name, use_case=use_case).search.get("class_weight")
        assert dimension is not None, f"{use_case}/{name} does not search class_weight"
        assert {None, "balanced"} <= set(vars(dimension).get("choices") or []), name


def test_balanced_class_weight_reaches_every_review_estimator() -> None:
    from sklearn.calibration import CalibratedClassifierCV

    for name in family_names():
        head = build_pipeline(name, {"class_weight": "balanced"})[-1]
        if isinstance(head, CalibratedClassifierCV):
            head = head.estimator
        params = head.get_params()
        if "class_weight" in params:
            assert params["class_weight"] == "balanced", name
        else:  # naive Bayes: uniform class priors
            assert params["fit_prior"] is False, name


@pytest.fixture(scope="module")
def fitted_zoo(review_table: pd.DataFrame) -> dict[str, object]:
    train, _, _ = split_frames(review_table)
    return {
        name: build_pipeline(name, TINY.get(name), seed=3).fit(feature_frame(train), labels(train))
        for name in family_names()
    }


@pytest.mark.slow
def test_every_family_learns_sentiment(
    fitted_zoo: dict[str, object], review_table: pd.DataFrame
) -> None:
    _, valid, _ = split_frames(review_table)
    for name, model in fitted_zoo.items():
        proba = model.predict_proba(feature_frame(valid))[:, 1]  # type: ignore[attr-defined]
        accuracy = float(((proba >= 0.5) == labels(valid).to_numpy()).mean())
        assert accuracy > 0.75, f"{name}: valid accuracy {accuracy:.3f}"
        assert proba.min() >= 0 and proba.max() <= 1


@pytest.mark.slow
def test_every_family_loads_in_a_process_without_training(
    fitted_zoo: dict[str, object], tmp_path: Path
) -> None:
    from features.reviews import build_features

    inputs = build_features(pd.DataFrame({"text": TEXTS}))
    expected = {}
    for name, model in fitted_zoo.items():
        servable = to_servable(model)  # type: ignore[arg-type]
        assert non_servable_components(servable) == set(), name
        mlflow.sklearn.save_model(
            servable,
            str(tmp_path / name),
            serialization_format="cloudpickle",
            pip_requirements=PINS,
        )
        expected[name] = model.predict_proba(inputs)[:, 1].tolist()  # type: ignore[attr-defined]

    script = textwrap.dedent(
        f"""
        import importlib.abc, json, sys

        class BlockTraining(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "training" or name.startswith("training."):
                    raise ImportError(f"{{name}} is not importable in the serving process")
                return None

        sys.meta_path.insert(0, BlockTraining())
        import mlflow.sklearn
        import pandas as pd
        from features.reviews import build_features

        inputs = build_features(pd.DataFrame({{"text": {TEXTS!r}}}))
        out = {{}}
        for name in {list(expected)!r}:
            model = mlflow.sklearn.load_model({str(tmp_path)!r} + "/" + name)
            out[name] = model.predict_proba(inputs)[:, 1].tolist()
        assert not any(m == "training" or m.startswith("training.") for m in sys.modules)
        print(json.dumps(out))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(loaded) == set(expected)
    for name in expected:
        np.testing.assert_allclose(loaded[name], expected[name], rtol=0, atol=1e-12)


def test_the_block_in_the_load_test_is_real(tmp_path: Path) -> None:
    """A model holding a project class cannot be loaded once `training` is blocked."""
    counts = sp.csr_array(np.array([[1, 0, 2], [0, 3, 1], [2, 1, 0], [0, 2, 2]], dtype=float))
    custom = LogCountRatio().fit(counts, np.array([1, 0, 1, 0]))
    assert non_servable_components(custom) == {"training.zoo.LogCountRatio"}
    mlflow.sklearn.save_model(
        custom, str(tmp_path / "custom"), serialization_format="cloudpickle", pip_requirements=PINS
    )
    script = (
        "import sys, importlib.abc\n"
        "class B(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'training': raise ImportError(name)\n"
        "sys.meta_path.insert(0, B())\n"
        "import mlflow.sklearn\n"
        f"mlflow.sklearn.load_model({str(tmp_path / 'custom')!r})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "training" in done.stderr


def test_log_count_ratio_matches_wang_and_manning() -> None:
    x = np.array([[1, 0, 2], [0, 3, 1], [2, 1, 0], [0, 2, 2]], dtype=float)
    y = np.array([1, 0, 1, 0])
    alpha = 0.5
    p = alpha + x[y == 1].sum(axis=0)  # [3.5, 1.5, 2.5]
    q = alpha + x[y == 0].sum(axis=0)  # [0.5, 5.5, 3.5]
    r = np.log(p / p.sum()) - np.log(q / q.sum())
    nb = LogCountRatio(alpha=alpha).fit(sp.csr_array(x), y)
    np.testing.assert_allclose(nb.weights_.idf_, r)
    np.testing.assert_allclose(nb.transform(sp.csr_array(x)).toarray(), x * r)
    assert r[0] > 0 > r[1]  # feature 0 marks positives, feature 1 negatives
    exported = nb.servable()
    assert type(exported) is TfidfTransformer
    np.testing.assert_array_equal(exported.transform(sp.csr_array(x)).toarray(), x * r)
    with pytest.raises(ValueError, match="non-negative"):
        LogCountRatio().fit(sp.csr_array(-x), y)


def test_nbsvm_export_predicts_identically(fitted_zoo: dict[str, object]) -> None:
    model = fitted_zoo["nbsvm"]
    assert "training.zoo.LogCountRatio" in non_servable_components(model)
    servable = to_servable(model)  # type: ignore[arg-type]
    assert type(servable.named_steps["nb"]) is TfidfTransformer
    from features.reviews import build_features

    inputs = build_features(pd.DataFrame({"text": TEXTS}))
    np.testing.assert_array_equal(
        servable.predict_proba(inputs),
        model.predict_proba(inputs),  # type: ignore[attr-defined]
    )


def test_features_step_does_not_use_labels(review_table: pd.DataFrame) -> None:
    train, _, _ = split_frames(review_table)
    X = feature_frame(train)
    flipped = 1 - labels(train)
    for name in ("nbsvm", "svd_gbm"):
        step = build_pipeline(name, TINY.get(name)).named_steps["features"]
        a = step.fit_transform(X, labels(train))
        b = build_pipeline(name, TINY.get(name)).named_steps["features"].fit_transform(X, flipped)
        a, b = (m.toarray() if sp.issparse(m) else m for m in (a, b))
        np.testing.assert_array_equal(a, b)


def test_params_switch_branches(review_table: pd.DataFrame) -> None:
    train, _, _ = split_frames(review_table)
    words_only = build_pipeline("logreg", {"char_ngram_max": 0, "use_numeric": False})
    with_chars = build_pipeline("logreg", {"char_ngram_max": 4, "use_numeric": True})
    names = [b[0] for b in words_only.named_steps["features"].transformers]
    assert names == ["words"]
    assert [b[0] for b in with_chars.named_steps["features"].transformers] == [
        "words",
        "chars",
        "numeric",
    ]
    fitted = with_chars.fit(feature_frame(train), labels(train))
    chars = fitted.named_steps["features"].named_transformers_["chars"]
    assert chars.ngram_range == (2, 4) and chars.analyzer == "char_wb"
    assert any(len(term) == 4 for term in chars.vocabulary_)
    n_numeric = len(FEATURE_COLUMNS) - 1
    assert fitted.named_steps["classifier"].coef_.shape[1] == (
        len(fitted.named_steps["features"].named_transformers_["words"].vocabulary_)
        + len(chars.vocabulary_)
        + n_numeric
    )


def test_unknown_family_and_parameters_are_named() -> None:
    with pytest.raises(ZooError, match=r"unknown model family 'xgboost'.*logreg"):
        build_pipeline("xgboost")
    with pytest.raises(ZooError, match=r"family 'logreg' has no parameters \['c'\]"):
        build_pipeline("logreg", {"c": 1.0})
    with pytest.raises(ZooError, match="token_pattern 'emoji'"):
        build_pipeline("logreg", {"token_pattern": "emoji"})
    with pytest.raises(ZooError, match="numeric_scaling to minmax"):
        build_pipeline("naive_bayes", {"use_numeric": True, "numeric_scaling": "standard"})


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    text = SEARCH_SPACES.read_text()
    assert old in text
    path = tmp_path / "spaces.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_search_space_file_is_checked(tmp_path: Path) -> None:
    spaces = load_search_spaces()
    assert spaces.families["nbsvm"].defaults["word_ngram_max"] == 3
    # YAML merge keys: the shared text defaults reach every family
    assert spaces.families["sgd_elasticnet"].defaults["token_pattern"] == "words_punct"

    outside = _variant(tmp_path, "C: {type: float, low: 0.5,", "C: {type: float, low: 10.0,")
    with pytest.raises(ZooError, match=r"spaces.yaml: families.logreg defaults for \['C'\]"):
        load_search_spaces(outside)
    unknown = _variant(
        tmp_path, "      C: {type: float, low: 0.5", "      Cee: {type: float, low: 0.5"
    )
    with pytest.raises(ZooError, match=r"names \['Cee'\], which are not in its defaults"):
        load_search_spaces(unknown)
    bad_type = _variant(
        tmp_path, "{type: int, low: 1, high: 3}", "{type: integer, low: 1, high: 3}"
    )
    with pytest.raises(ZooError, match="type one of"):
        load_search_spaces(bad_type)
