"""Per-feature contributions of a fitted tabular pipeline, and the top reasons from them.

Runs in the serving process (imports scikit-learn, numpy, pandas; LightGBM and
shap only for the models that need them), on the pipelines
`training.tabular_zoo` builds: a `features` step over the numeric feature
columns and a `classifier` step, possibly a `CalibratedClassifierCV` with
`ensemble=False` holding one estimator. The calibrator is monotone, so the
features that raise the estimator's score are the ones that raise the
probability; contributions are read from that one estimator:

- linear (logistic regression): coefficient x (transformed value - transformed
  value of the median client), summed over the columns a feature became (its
  quantile bins). Exact: they add up to the log-odds difference between the
  client and the median client (medians from the fitted imputer; a pipeline
  without an imputer is measured from the transformed origin, which is the
  training mean of standardised columns).
- LightGBM: the booster's own TreeSHAP (`pred_contrib=True`), in log-odds.
- scikit-learn histogram boosting and forests: `shap.TreeExplainer` (TreeSHAP;
  log-odds for boosting, probability for forests).

Every method is additive: a row's contributions plus the reference score equal
its score, which the tests check against the model's own predictions.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import KBinsDiscretizer

FEATURES_STEP = "features"
CLASSIFIER_STEP = "classifier"
TOP_REASONS = 3


class ExplainError(TypeError):
    """The model is not a pipeline this module can read contributions from."""


@dataclass(frozen=True)
class Contributions:
    """values[i, j]: how much feature j moved row i's score away from `reference`."""

    features: tuple[str, ...]
    values: np.ndarray
    reference: np.ndarray  # per row: the score all contributions start from
    method: str


def _steps(model: Any) -> tuple[Any, Any]:
    if not isinstance(model, Pipeline) or FEATURES_STEP not in model.named_steps:
        raise ExplainError(
            f"reason codes need a Pipeline with steps {FEATURES_STEP!r} and {CLASSIFIER_STEP!r}, "
            f"got {type(model).__name__}"
        )
    classifier = model.named_steps[CLASSIFIER_STEP]
    if isinstance(classifier, CalibratedClassifierCV):
        fitted = classifier.calibrated_classifiers_
        if len(fitted) != 1:
            raise ExplainError(
                "a CalibratedClassifierCV with ensemble=True averages several estimators; "
                "build it with ensemble=False to explain it"
            )
        classifier = fitted[0].estimator
    return model.named_steps[FEATURES_STEP], classifier


def _imputer(features: Any) -> ColumnTransformer:
    first = features.steps[0][1] if isinstance(features, Pipeline) else features
    if not isinstance(first, ColumnTransformer) or len(first.transformers_) < 1:
        raise ExplainError("the features step must start with the imputing ColumnTransformer")
    return first


def _input_columns(features: Any) -> list[str]:
    _name, _, columns = _imputer(features).transformers_[0]
    return list(columns)


def _owners(features: Any, n_inputs: int, n_outputs: int) -> np.ndarray:
    """Which input feature each transformed column came from."""
    if isinstance(features, Pipeline):
        encode = features.steps[-1][1]
        if isinstance(encode, KBinsDiscretizer) and encode.encode != "ordinal":
            owners = np.repeat(np.arange(n_inputs), np.asarray(encode.n_bins_, dtype=int))
            if len(owners) == n_outputs:
                return owners
    if n_outputs != n_inputs:
        raise ExplainError(f"cannot map {n_outputs} model columns back to {n_inputs} features")
    return np.arange(n_inputs)


def _linear(features: Any, estimator: LogisticRegression, frame: pd.DataFrame) -> Contributions:
    columns = _input_columns(features)
    z = np.asarray(features.transform(frame), dtype="float64")
    medians = getattr(_imputer(features).transformers_[0][1], "statistics_", None)
    if medians is not None:
        z_ref = np.asarray(
            features.transform(pd.DataFrame([medians], columns=columns)), dtype="float64"
        )[0]
    else:
        # No imputer to name a median client: measure from the transformed origin (the
        # training mean for standardised columns).
        z_ref = np.zeros(z.shape[1])
    per_column = (z - z_ref) * estimator.coef_[0]
    owners = _owners(features, len(columns), z.shape[1])
    values = np.zeros((len(frame), len(columns)))
    np.add.at(values.T, owners, per_column.T)
    reference = np.full(len(frame), float(z_ref @ estimator.coef_[0] + estimator.intercept_[0]))
    return Contributions(tuple(columns), values, reference, "linear")


def _lightgbm(features: Any, estimator: Any, frame: pd.DataFrame) -> Contributions:
    z = np.asarray(features.transform(frame), dtype="float64")
    # One thread: the numbers do not depend on it, and LightGBM's default (every core, OpenMP)
    # made a one-row call ~100x slower on a busy 2-core machine than the work itself.
    out = np.asarray(estimator.booster_.predict(z, pred_contrib=True, num_threads=1))
    columns = _input_columns(features)
    return Contributions(tuple(columns), out[:, :-1], out[:, -1], "treeshap-lightgbm")


_EXPLAINERS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _sklearn_trees(features: Any, estimator: Any, frame: pd.DataFrame) -> Contributions:
    import shap  # heavy (numba): only imported for the models that need it

    explainer = _EXPLAINERS.get(estimator)
    if explainer is None:
        explainer = shap.TreeExplainer(estimator)
        _EXPLAINERS[estimator] = explainer
    z = np.asarray(features.transform(frame), dtype="float64")
    values = np.asarray(explainer.shap_values(z, check_additivity=False))
    expected = np.atleast_1d(np.asarray(explainer.expected_value, dtype="float64"))
    if values.ndim == 3:  # (rows, features, classes): the default class
        values, expected = values[:, :, 1], expected[1:]
    reference = np.full(len(frame), float(expected[-1]))
    return Contributions(tuple(_input_columns(features)), values, reference, "treeshap-shap")


def feature_contributions(model: Any, frame: pd.DataFrame) -> Contributions:
    """Contributions of each feature column of `frame` to each row's score under `model`."""
    features, estimator = _steps(model)
    kind = type(estimator).__name__
    if isinstance(estimator, LogisticRegression):
        return _linear(features, estimator, frame)
    if type(estimator).__module__.split(".")[0] == "lightgbm":
        return _lightgbm(features, estimator, frame)
    if kind in {
        "HistGradientBoostingClassifier",
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "GradientBoostingClassifier",
        "DecisionTreeClassifier",
    }:
        return _sklearn_trees(features, estimator, frame)
    raise ExplainError(f"no contribution method for {kind}")


def top_reasons(
    contributions: Contributions, frame: pd.DataFrame, top: int = TOP_REASONS
) -> list[list[dict[str, Any]]]:
    """Per row, up to `top` features with the largest positive contributions, largest first."""
    rows: list[list[dict[str, Any]]] = []
    names = contributions.features
    for i, row in enumerate(contributions.values):
        order = np.argsort(-row, kind="stable")
        reasons = []
        for j in order[:top]:
            if not row[j] > 0:
                break
            value = frame.iloc[i][names[j]]
            reasons.append(
                {
                    "feature": names[j],
                    "contribution": float(row[j]),
                    "value": None if pd.isna(value) else float(value),
                }
            )
        rows.append(reasons)
    return rows


def explain(model: Any, features: pd.DataFrame) -> list[list[dict[str, Any]]]:
    """The registry's `explain` hook: top three reason codes per row of a feature frame."""
    return top_reasons(feature_contributions(model, features), features)
