"""Fast paths for tabular use cases: features, P(label 1) and reason codes on plain arrays.

A one-row credit request through the generic path spends nearly all its time in glue, not in
arithmetic: a pandas frame from the request dict, `pd.to_numeric` per raw column, the frame
the pipeline's `ColumnTransformer` selects from and validates, scikit-learn's input checks in
the imputer, the calibrator and LightGBM's wrapper, and for the reason codes the same frame
again plus one `DataFrame.iloc` per reason. This module does the same arithmetic on numpy:

- `row_featurizer`: the feature module's `featurize_rows` (raw dicts -> the float64 matrix
  `build_features` builds -> the same feature functions), proven against the DataFrame path
  on the contract's example rows when the use case is described; a mismatch keeps the
  DataFrame path.
- `TabularPipelineScorer`: for the tabular zoo's `Pipeline(features, classifier)` it stacks
  the feature columns into the matrix the `ColumnTransformer` would pass on, imputes with the
  fitted medians, runs the remaining feature steps unchanged and calls the classifier; a
  `CalibratedClassifierCV(ensemble=False)` around LightGBM is driven through its booster
  (the response the calibrator was fitted on) and its fitted calibrator, with scikit-learn's
  own clipping rule. `reasons` gives the top
  reason codes from the booster's TreeSHAP on the same matrix.

Nothing here is trusted: `tabular_candidates` offers the scorer to `compile_scorer`, which
keeps it only if its batch probabilities equal the untouched pipeline's one-row answers bit
for bit, and the scorer's reason codes are used only if they equal the use case's `explain`
hook on the same rows (else the hook answers, as before).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import _check_response_method

from serving.usecase import ServedUseCase

log = logging.getLogger(__name__)

FeatureColumns = Mapping[str, Sequence[Any]]
RowsPath = Callable[[Sequence[Any]], dict[str, list[Any]] | None]
FramePath = Callable[[Sequence[Any]], dict[str, list[Any]]]
TOP_REASONS = 3


class UnsupportedTabularModelError(ValueError):
    """The fitted model is not a shape TabularPipelineScorer drives."""


# ---- features ---------------------------------------------------------------------------------


def same_columns(
    got: Mapping[str, Sequence[Any]], want: Mapping[str, Sequence[Any]], names: Sequence[str]
) -> bool:
    """Whether two feature-column mappings hold the same values of the same types, bit for bit."""
    for name in names:
        a, b = list(got[name]), list(want[name])
        if len(a) != len(b) or [type(x) for x in a] != [type(y) for y in b]:
            return False
        left = np.asarray(a, dtype="float64")
        right = np.asarray(b, dtype="float64")
        known = ~np.isnan(left)
        if not np.array_equal(np.isnan(left), np.isnan(right)):
            return False
        if left[known].tobytes() != right[known].tobytes():
            return False
    return True


def row_featurizer(
    rows_path: RowsPath,
    frame_path: FramePath,
    columns: Sequence[str],
    checks: Sequence[Any] = (),
) -> FramePath:
    """`rows_path` with `frame_path` behind it, if both agree on `checks` (else `frame_path`)."""
    if checks:
        fast = rows_path(list(checks))
        if fast is None or not same_columns(fast, frame_path(list(checks)), columns):
            log.warning(
                "the feature module's featurize_rows differs from build_features on the "
                "contract's example rows: computing features through build_features"
            )
            return frame_path

    def featurize(items: Sequence[Any]) -> dict[str, list[Any]]:
        out = rows_path(items)
        return frame_path(items) if out is None else out

    return featurize


# ---- scoring ----------------------------------------------------------------------------------


def _lightgbm_booster(estimator: Any) -> Any:
    if type(estimator).__module__.split(".")[0] != "lightgbm":
        return None
    return getattr(estimator, "booster_", None)


class TabularPipelineScorer:
    """Drives the tabular zoo's Pipeline(features, classifier) on a float64 matrix."""

    name = "tabular-fast"

    def __init__(self, pipeline: Any, positive_index: int, use_case: ServedUseCase) -> None:
        if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
            raise UnsupportedTabularModelError("not a two-step Pipeline(features, classifier)")
        features, classifier = pipeline.steps[0][1], pipeline.steps[1][1]
        head, rest = features, []
        if isinstance(features, Pipeline):
            head = features.steps[0][1]
            rest = [s for _, s in features.steps[1:] if s not in (None, "passthrough")]
        if not isinstance(head, ColumnTransformer) or not hasattr(head, "transformers_"):
            raise UnsupportedTabularModelError(
                "the features step does not start with a fitted ColumnTransformer"
            )
        if head.transformer_weights or getattr(head, "_sklearn_output_config", {}).get(
            "transform"
        ) not in (None, "default"):
            raise UnsupportedTabularModelError("ColumnTransformer weights/set_output not mirrored")
        branches = [
            (t, c)
            for _, t, c in head.transformers_
            if t != "drop" and not (isinstance(c, list | tuple | np.ndarray) and len(c) == 0)
        ]
        if len(branches) != 1:
            raise UnsupportedTabularModelError("expected one column branch (the imputer)")
        imputer, columns = branches[0]
        if not isinstance(imputer, SimpleImputer) or imputer.add_indicator:
            raise UnsupportedTabularModelError("the branch is not a plain SimpleImputer")
        missing = imputer.missing_values
        if not (isinstance(missing, float) and math.isnan(missing)):
            raise UnsupportedTabularModelError("the imputer does not replace NaN")
        statistics = np.asarray(imputer.statistics_, dtype="float64")
        if not np.all(np.isfinite(statistics)):
            raise UnsupportedTabularModelError("an imputer statistic is NaN (a dropped column)")
        known = set(use_case.feature_columns)
        if isinstance(columns, str) or not all(isinstance(c, str) and c in known for c in columns):
            raise UnsupportedTabularModelError(f"branch columns {columns!r} are not feature names")
        for step in [*rest, classifier]:
            if hasattr(step, "feature_names_in_"):
                raise UnsupportedTabularModelError(f"{type(step).__name__} expects named columns")
        self._columns = tuple(columns)
        order = {name: i for i, name in enumerate(use_case.feature_columns)}
        self._row_index = [order[c] for c in self._columns]
        self._statistics = statistics
        self._rest = tuple(rest)
        self._classifier = classifier
        self._positive_index = positive_index
        self._booster: Any = None
        self._calibrator: Any = None
        self._raw_score = False
        self._sigmoid = False
        self._explain_booster: Any = None
        estimator = classifier
        if isinstance(classifier, CalibratedClassifierCV):
            fitted = classifier.calibrated_classifiers_
            if len(fitted) == 1:
                estimator = fitted[0].estimator
                if (
                    fitted[0].method in ("sigmoid", "isotonic")
                    and len(fitted[0].calibrators) == 1
                    and [int(c) for c in classifier.classes_] == [0, 1]
                    and [int(c) for c in getattr(estimator, "classes_", [])] == [0, 1]
                    and positive_index == 1
                    and _lightgbm_booster(estimator) is not None
                ):
                    self._booster = _lightgbm_booster(estimator)
                    self._calibrator = fitted[0].calibrators[0]
                    # What the calibrator was fitted on: the estimator's decision_function
                    # (LightGBM >= 4.6: the raw log-odds) if it has one, else P(1).
                    method = _check_response_method(
                        estimator, ["decision_function", "predict_proba"]
                    )
                    self._raw_score = method.__name__ == "decision_function"
                    self._sigmoid = type(self._calibrator).__name__ == "_SigmoidCalibration"
        if not rest:  # TreeSHAP reads the imputed matrix itself (explain.contributions)
            self._explain_booster = _lightgbm_booster(estimator)
        self.reasons_checked = False

    # The matrix the ColumnTransformer and the remaining feature steps hand the classifier.
    def _imputed(self, matrix: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(matrix), self._statistics, matrix)

    def _transformed(self, imputed: np.ndarray) -> np.ndarray:
        for step in self._rest:
            imputed = step.transform(imputed)
        return imputed

    def matrix(self, columns: FeatureColumns) -> np.ndarray:
        raw = np.column_stack([np.asarray(columns[c], dtype="float64") for c in self._columns])
        return self._imputed(raw)

    def score(self, columns: FeatureColumns) -> np.ndarray:
        z = self._transformed(self.matrix(columns))
        if self._booster is not None:
            # CalibratedClassifierCV(ensemble=False).predict_proba for a binary LightGBM:
            # the calibrator on P(1), then scikit-learn's clipping of values just above 1.
            response = self._booster.predict(z, raw_score=self._raw_score, num_threads=1)
            if self._sigmoid:  # _SigmoidCalibration.predict without its input check
                p = expit(-(self._calibrator.a_ * response + self._calibrator.b_))
            else:
                p = np.asarray(self._calibrator.predict(response), dtype="float64")
            p = np.where((p > 1.0) & (p <= 1.0 + 1e-5), 1.0, p)
            return np.ascontiguousarray(p, dtype=np.float64)
        proba = np.asarray(self._classifier.predict_proba(z))
        return np.ascontiguousarray(proba[:, self._positive_index], dtype=np.float64)

    @property
    def explains(self) -> bool:
        """Whether `reasons` may answer (a LightGBM model whose reasons were proven)."""
        return self._explain_booster is not None and self.reasons_checked

    def contributions(self, feature_rows: Sequence[Sequence[Any]]) -> np.ndarray:
        raw = np.array(feature_rows, dtype="float64").reshape(len(feature_rows), -1)
        z = self._imputed(raw[:, self._row_index])
        out = np.asarray(self._explain_booster.predict(z, pred_contrib=True, num_threads=1))
        return out[:, :-1]

    def reasons(
        self, feature_rows: Sequence[Sequence[Any]], top: int = TOP_REASONS
    ) -> list[list[dict[str, Any]]]:
        """Top reason codes per row (feature_rows in the use case's feature-column order)."""
        values = self.contributions(feature_rows)
        names = self._columns
        index = self._row_index
        out: list[list[dict[str, Any]]] = []
        for row_values, row in zip(values, feature_rows, strict=True):
            order = np.argsort(-row_values, kind="stable")
            reasons = []
            for j in order[:top]:
                contribution = row_values[j]
                if not contribution > 0:
                    break
                value = row[index[j]]
                reasons.append(
                    {
                        "feature": names[j],
                        "contribution": float(contribution),
                        "value": None if value is None or math.isnan(value) else float(value),
                    }
                )
            out.append(reasons)
        return out


class TabularRowByRowScorer:
    """`TabularPipelineScorer` one row at a time, for models whose batch answers differ.

    A linear model's batched dot product (BLAS) may differ in the last bit from its one-row
    answer; the pipeline's own one-row path then is the reference, and this gives its
    numbers at numpy cost rather than a DataFrame and scikit-learn's checks per row.
    """

    name = "tabular-fast-row-by-row"

    def __init__(self, fast: TabularPipelineScorer) -> None:
        self._fast = fast

    def score(self, columns: FeatureColumns) -> np.ndarray:
        names = self._fast._columns
        n = len(columns[names[0]])
        out = np.empty(n, dtype=np.float64)
        for i in range(n):
            out[i] = self._fast.score({name: columns[name][i : i + 1] for name in names})[0]
        return out


def _reference_reasons(
    pipeline: Any, use_case: ServedUseCase, items: Sequence[Any]
) -> list[list[dict[str, Any]]]:
    explain = use_case.explain
    assert explain is not None
    out: list[list[dict[str, Any]]] = []
    for item in items:
        frame = use_case.build_features(use_case.raw_frame([item]))[list(use_case.feature_columns)]
        out.extend(list(r) for r in explain(pipeline, frame))
    return out


def tabular_candidates(
    pipeline: Any, positive_index: int, use_case: ServedUseCase, items: Sequence[Any]
) -> list[Any]:
    """The tabular fast scorer for `compile_scorer` to check, its reasons proven on `items`."""
    try:
        scorer = TabularPipelineScorer(pipeline, positive_index, use_case)
    except UnsupportedTabularModelError as error:
        log.info("tabular fast scoring path not used: %s", error)
        return []
    if scorer._explain_booster is not None and use_case.explain is not None and items:
        columns = use_case.featurize(list(items))
        rows = list(zip(*(columns[n] for n in use_case.feature_columns), strict=True))
        try:
            got = scorer.reasons(rows)
            want = _reference_reasons(pipeline, use_case, items)
        except Exception as error:  # the hook cannot explain this model: it says so per request
            log.info("reason codes not precomputed: %s: %s", type(error).__name__, error)
            return [scorer, TabularRowByRowScorer(scorer)]
        scorer.reasons_checked = got == want
        if not scorer.reasons_checked:
            log.warning(
                "the fast reason codes differ from the %s explain hook's: the hook answers",
                use_case.name,
            )
    # compile_scorer tries the batch path first; the row-by-row one only if batches differ
    # (it is placed before the generic pipeline candidates, which are slower on one row).
    return [scorer, TabularRowByRowScorer(scorer)]


def fast_reasons(scorer: Any, feature_rows: Sequence[Sequence[Any]]) -> Any:
    """The scorer's proven reason codes for these rows, or None to ask the explain hook."""
    if isinstance(scorer, TabularPipelineScorer) and scorer.explains:
        return scorer.reasons(feature_rows)
    return None


__all__ = [
    "TabularPipelineScorer",
    "TabularRowByRowScorer",
    "UnsupportedTabularModelError",
    "fast_reasons",
    "row_featurizer",
    "same_columns",
    "tabular_candidates",
]
