"""Tabular model families: the builders a tabular use case's search_spaces.yaml names.

A tabular use case's `search_spaces.yaml` says `builders: training.tabular_zoo`;
the zoo then builds each family listed there with `BUILDERS[family](params,
seed, layout)`. Every pipeline has the shape the search expects:

    features    label-free preprocessing of the numeric feature columns
                (`layout.numeric`), returning a float matrix: median imputation,
                then scaling or quantile binning for the linear family, the
                imputed values as they are for the trees. Fitted once per
                configuration and cached across trials by the search.
    classifier  the family's estimator, inside `CalibratedClassifierCV`
                (sigmoid or isotonic, a search dimension) so that `predict_proba`
                is a calibrated probability even when class weighting (also a
                search dimension of every family) shifts the raw scores.

Calibration uses `ensemble=False`: the estimator is fitted once on all rows
and the calibrator on out-of-fold scores, so the served model holds *one*
estimator whose contributions `explain.contributions` can read (a monotone
calibrator does not change which features push the score up).

LightGBM is the gradient-boosting library of choice over XGBoost here: its
booster pickles into the scikit-learn pipeline and loads with the `lightgbm`
wheel alone (no compiler, no GPU runtime), it is fast on a few tens of
thousands of rows with one thread, and `predict(..., pred_contrib=True)` is
TreeSHAP built in, which the reason codes use. Everything else is stock
scikit-learn, so what is logged holds sklearn, numpy, scipy and lightgbm
objects only (`training.zoo.SERVABLE_PACKAGES`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import KBinsDiscretizer, StandardScaler

from training.zoo import CLASSIFIER_STEP, FEATURES_STEP, FeatureLayout, ZooError

CALIBRATIONS = ("sigmoid", "isotonic", "none")
CLASS_WEIGHTS = (None, "balanced")
ENCODINGS = ("scaled", "binned")


def _class_weight(value: Any, allowed: tuple[Any, ...] = CLASS_WEIGHTS) -> Any:
    if value not in allowed:
        raise ZooError(f"class_weight must be one of {list(allowed)}, got {value!r}")
    return value


def _calibrated(estimator: Any, p: dict[str, Any]) -> Any:
    method = p["calibration"]
    if method not in CALIBRATIONS:
        raise ZooError(f"calibration must be one of {CALIBRATIONS}, got {method!r}")
    if method == "none":
        return estimator
    folds = int(p["calibration_folds"])
    if folds < 2:
        raise ZooError(f"calibration_folds must be >= 2, got {folds}")
    return CalibratedClassifierCV(estimator, method=method, cv=folds, ensemble=False)


def _imputed(layout: FeatureLayout) -> ColumnTransformer:
    """Median-imputed numeric columns as a float matrix (NaN only occurs outside the contract)."""
    if layout.categorical:
        raise ZooError(
            f"the tabular families read numeric features only; {list(layout.categorical)} are "
            "strings (one-hot encode them in the feature module)"
        )
    return ColumnTransformer(
        [("numeric", SimpleImputer(strategy="median"), list(layout.numeric))],
        remainder="drop",
    )


def _pipeline(features: Any, classifier: Any) -> Pipeline:
    return Pipeline([(FEATURES_STEP, features), (CLASSIFIER_STEP, classifier)])


def build_logreg(p: dict[str, Any], seed: int, layout: FeatureLayout) -> Pipeline:
    """Logistic regression on standardised or quantile-binned (one-hot) features."""
    encoding = p["encoding"]
    if encoding not in ENCODINGS:
        raise ZooError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    if encoding == "scaled":
        encode: Any = StandardScaler()
    else:
        encode = KBinsDiscretizer(
            n_bins=int(p["n_bins"]),
            encode="onehot-dense",
            strategy="quantile",
            quantile_method="averaged_inverted_cdf",
        )
    features = Pipeline([("impute", _imputed(layout)), ("encode", encode)])
    model = LogisticRegression(
        C=float(p["C"]),
        class_weight=_class_weight(p["class_weight"]),
        max_iter=int(p["max_iter"]),
        random_state=seed,
    )
    return _pipeline(features, _calibrated(model, p))


def build_hist_gbm(p: dict[str, Any], seed: int, layout: FeatureLayout) -> Pipeline:
    """scikit-learn's histogram gradient boosting (native missing-value handling)."""
    model = HistGradientBoostingClassifier(
        learning_rate=float(p["learning_rate"]),
        max_iter=int(p["max_iter"]),
        max_leaf_nodes=int(p["max_leaf_nodes"]),
        min_samples_leaf=int(p["min_samples_leaf"]),
        l2_regularization=float(p["l2_regularization"]),
        class_weight=_class_weight(p["class_weight"]),
        early_stopping=False,
        random_state=seed,
    )
    return _pipeline(_imputed(layout), _calibrated(model, p))


def build_forest(p: dict[str, Any], seed: int, layout: FeatureLayout) -> Pipeline:
    """Random forest or extremely randomised trees (`variant`)."""
    variants = {"random_forest": RandomForestClassifier, "extra_trees": ExtraTreesClassifier}
    if p["variant"] not in variants:
        raise ZooError(f"variant must be one of {sorted(variants)}, got {p['variant']!r}")
    max_depth = p["max_depth"]
    model = variants[p["variant"]](
        n_estimators=int(p["n_estimators"]),
        max_depth=None if max_depth is None else int(max_depth),
        min_samples_leaf=int(p["min_samples_leaf"]),
        max_features=float(p["max_features"]),
        class_weight=_class_weight(p["class_weight"], (*CLASS_WEIGHTS, "balanced_subsample")),
        n_jobs=1,
        random_state=seed,
    )
    return _pipeline(_imputed(layout), _calibrated(model, p))


def build_lightgbm(p: dict[str, Any], seed: int, layout: FeatureLayout) -> Pipeline:
    """LightGBM gradient boosting (see the module docstring for why LightGBM)."""
    from lightgbm import LGBMClassifier

    model = LGBMClassifier(
        n_estimators=int(p["n_estimators"]),
        learning_rate=float(p["learning_rate"]),
        num_leaves=int(p["num_leaves"]),
        min_child_samples=int(p["min_child_samples"]),
        subsample=float(p["subsample"]),
        subsample_freq=1,
        colsample_bytree=float(p["colsample_bytree"]),
        reg_lambda=float(p["reg_lambda"]),
        class_weight=_class_weight(p["class_weight"]),
        n_jobs=1,
        random_state=seed,
        verbose=-1,
    )
    return _pipeline(_imputed(layout), _calibrated(model, p))


BUILDERS: dict[str, Callable[[dict[str, Any], int, FeatureLayout], Pipeline]] = {
    "logreg": build_logreg,
    "hist_gbm": build_hist_gbm,
    "forest": build_forest,
    "lightgbm": build_lightgbm,
}
