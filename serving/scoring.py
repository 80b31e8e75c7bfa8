"""Scoring many reviews at once, as fast as the model allows, with the pipeline's exact numbers.

The use case's feature code computes the features (`ServedUseCase.featurize`:
a text use case's column-wise `featurize_texts`, else `build_features`). A fitted scikit-learn
`Pipeline(ColumnTransformer, ..., classifier)` then spends most of a
single-review call in glue: selecting columns from a DataFrame, feature-name
and output-container checks, joblib dispatch. `FastPipelineScorer` feeds each
branch of the ColumnTransformer its columns directly (a list of texts, a 2-D
numeric array), stacks the branch outputs the way ColumnTransformer does and
runs the remaining steps unchanged, so every arithmetic operation is the one
the pipeline would have done.

For the shape training produces (one TF-IDF branch first, numeric branches of
`FunctionTransformer`/`StandardScaler` after it, a binary `LogisticRegression`)
`DirectLinearScorer` goes one step further: it runs the fitted steps' arithmetic
itself on the arrays it builds (vocabulary counts, sub-linear tf, idf scaling,
scikit-learn's own row-normalisation kernel, log1p and scaling, the `coef_` dot
product in the stacked matrix's column order, intercept, `expit`), without
scikit-learn's per-call input validation and dataframe detection, which cost
about half of a small batch.

Equality is not assumed, it is checked: `compile_scorer` scores a fixed set of
awkward reviews one at a time through the untouched pipeline and as one batch
through each candidate, and keeps the first candidate that reproduces every
probability bit for bit. A model the fast path does not reproduce exactly is
served through its own `predict_proba` (and, if even batching changes its
numbers, one review at a time), so speed never changes an answer.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils import check_array
from sklearn.utils.sparsefuncs_fast import (
    inplace_csr_row_normalize_l1,
    inplace_csr_row_normalize_l2,
)

from serving.usecase import ServedUseCase, served_use_case

log = logging.getLogger(__name__)

FeatureColumns = Mapping[str, Sequence[Any]]

# Reviews that exercise every feature: markup, entities, shouting, negations,
# elongation, non-ASCII, control characters, long and one-word texts.
CHECK_TEXTS: tuple[str, ...] = (
    "",
    "a",
    "A GREAT film!!! <br />Not boring at all... sooo good?",
    "caf\u00e9 \u2014 ok",
    "An absolute delight from start to finish, I loved every minute!",
    "Dull, badly acted and far too long. I want those two hours back.",
    "It was NOT terrible... <br /><br />but sooo slow?? Don\x92t bother &amp; skip",
    "I can't recommend it. Nobody should waste money on this; nothing works.",
    "<p>Five stars.</p> <i>Would buy again</i> &lt;3",
    "Terrible terrible TERRIBLE acting, worst plot ever?!?!",
    "emoji \U0001f600\U0001f44d and ZWJ \U0001f469\u200d\U0001f467 sequences, so goooood",
    "ctrl \x00\x07\x1b chars \x7f and \u200b\u2028 separators",
    "The battery died after two days and support never answered my emails.",
    "Solid performances, a clever script and a score that stays with you.",
    "meh. it was fine i guess, not great not awful",
    "Ein wunderbarer Film, ich habe jede Minute genossen. Tr\u00e8s bien !",
    "\u0130stanbul \u00df \u01c5 \ufb01ne \u2018quoted\u2019 \u201cdouble\u201d",
    "Tabs\tand\r\nnewlines\n\nand    runs   of spaces",
    "10/10 would watch again!!! " * 12,
    "This is a long and winding review that says many things about the film. " * 40,
)


class Scorer(Protocol):
    """P(positive) for each row of a featurize_texts() column mapping."""

    name: str

    def score(self, columns: FeatureColumns) -> np.ndarray: ...


class ScorerMismatchError(RuntimeError):
    """No scoring path reproduces the pipeline's own probabilities."""


def feature_frame(columns: FeatureColumns, use_case: ServedUseCase | None = None) -> pd.DataFrame:
    """The DataFrame build_features would return for these columns (same dtypes)."""
    return (use_case or served_use_case()).feature_frame(columns)


@dataclass
class PipelineScorer:
    """The pipeline's own predict_proba on a feature DataFrame: always right, slower."""

    pipeline: Any
    positive_index: int
    name: str = "pipeline"
    use_case: ServedUseCase | None = None

    def score(self, columns: FeatureColumns) -> np.ndarray:
        proba = np.asarray(self.pipeline.predict_proba(feature_frame(columns, self.use_case)))
        return np.ascontiguousarray(proba[:, self.positive_index], dtype=np.float64)


@dataclass
class RowByRowScorer:
    """The pipeline one row at a time, for models whose numbers depend on the batch."""

    pipeline: Any
    positive_index: int
    name: str = "pipeline-row-by-row"
    use_case: ServedUseCase | None = None

    def score(self, columns: FeatureColumns) -> np.ndarray:
        names = (self.use_case or served_use_case()).feature_columns
        n = len(columns[names[0]])
        single = PipelineScorer(self.pipeline, self.positive_index, use_case=self.use_case)
        out = np.empty(n, dtype=np.float64)
        for i in range(n):
            out[i] = single.score({name: columns[name][i : i + 1] for name in names})[0]
        return out


class UnsupportedPipelineError(ValueError):
    """The fitted model is not a shape FastPipelineScorer knows how to drive."""


def _strip_feature_names(estimator: Any) -> Any:
    """A copy that accepts plain arrays without a 'fitted with feature names' warning.

    Only branches fed numeric columns are copied; they are small (a scaler, an
    imputer), whereas the text branch (a large vocabulary) is used as it is.
    """
    stripped = copy.deepcopy(estimator)
    pending = [stripped]
    while pending:
        item = pending.pop()
        if "feature_names_in_" in vars(item):
            del item.feature_names_in_
        if isinstance(item, Pipeline):
            pending.extend(step for _, step in item.steps if step not in (None, "passthrough"))
    return stripped


@dataclass(frozen=True)
class _Branch:
    transformer: Any
    columns: str | tuple[str, ...]


class FastPipelineScorer:
    """Drives Pipeline(ColumnTransformer, *steps, classifier) without DataFrames."""

    name = "fast"

    def __init__(
        self, pipeline: Any, positive_index: int, use_case: ServedUseCase | None = None
    ) -> None:
        self._dtypes = (use_case or served_use_case()).feature_dtypes
        if not isinstance(pipeline, Pipeline) or len(pipeline.steps) < 2:
            raise UnsupportedPipelineError("not a scikit-learn Pipeline with two or more steps")
        head = pipeline.steps[0][1]
        if not isinstance(head, ColumnTransformer) or not hasattr(head, "transformers_"):
            raise UnsupportedPipelineError("the first step is not a fitted ColumnTransformer")
        if head.transformer_weights:
            raise UnsupportedPipelineError("ColumnTransformer transformer_weights are not mirrored")
        if getattr(head, "_sklearn_output_config", {}).get("transform") not in (None, "default"):
            raise UnsupportedPipelineError("ColumnTransformer set_output is not the default")
        known = set(self._dtypes)
        branches: list[_Branch] = []
        for name, transformer, columns in head.transformers_:
            if transformer == "drop":
                continue
            if isinstance(columns, str) and columns in known and transformer != "passthrough":
                branches.append(_Branch(transformer, columns))
                continue
            if (
                isinstance(columns, list | tuple | np.ndarray)
                and len(columns) > 0
                and all(isinstance(c, str) and c in known for c in columns)
                and transformer != "passthrough"
            ):
                branches.append(_Branch(_strip_feature_names(transformer), tuple(columns)))
                continue
            if isinstance(columns, list | tuple | np.ndarray) and len(columns) == 0:
                continue
            raise UnsupportedPipelineError(
                f"branch {name!r} ({transformer!r} on {columns!r}) is not mirrored"
            )
        if not branches:
            raise UnsupportedPipelineError("the ColumnTransformer has no branch to drive")
        middle = [step for _, step in pipeline.steps[1:-1] if step not in (None, "passthrough")]
        final = pipeline.steps[-1][1]
        for step in [*middle, final]:
            if hasattr(step, "feature_names_in_"):
                raise UnsupportedPipelineError(
                    f"{type(step).__name__} after the ColumnTransformer expects named columns"
                )
        if not hasattr(final, "predict_proba"):
            raise UnsupportedPipelineError("the final step has no predict_proba")
        self._branches = tuple(branches)
        self._sparse_output = bool(head.sparse_output_)
        self._middle = tuple(middle)
        self._final = final
        self._positive_index = positive_index

    def _branch_input(self, branch: _Branch, columns: FeatureColumns) -> Any:
        if isinstance(branch.columns, str):
            return list(columns[branch.columns])
        arrays = [np.asarray(columns[c], dtype=self._dtypes[c]) for c in branch.columns]
        return np.column_stack(arrays)

    def score(self, columns: FeatureColumns) -> np.ndarray:
        outputs = [
            branch.transformer.transform(self._branch_input(branch, columns))
            for branch in self._branches
        ]
        if self._sparse_output:
            converted = [
                check_array(x, accept_sparse=True, ensure_all_finite=False) for x in outputs
            ]
            matrix: Any = sparse.hstack(converted).tocsr()
        else:
            matrix = np.hstack([x.toarray() if sparse.issparse(x) else x for x in outputs])
        for step in self._middle:
            matrix = step.transform(matrix)
        proba = np.asarray(self._final.predict_proba(matrix))
        return np.ascontiguousarray(proba[:, self._positive_index], dtype=np.float64)


_ROW_NORMALISERS = {"l1": inplace_csr_row_normalize_l1, "l2": inplace_csr_row_normalize_l2}


def _tfidf_weights(vectoriser: TfidfVectorizer, texts: list[str]) -> sparse.csr_matrix:
    """TfidfVectorizer.transform's arithmetic, minus the input checks of its TfidfTransformer.

    Counts come from the vectoriser's own CountVectorizer.transform (sorted indices, the
    fitted dtype); then, in place and in the same order as TfidfTransformer.transform:
    log(tf) + 1, times idf, and scikit-learn's row-normalisation kernel.
    """
    counts = CountVectorizer.transform(vectoriser, texts)
    weights = counts if sparse.issparse(counts) else sparse.csr_matrix(counts)
    tfidf = vectoriser._tfidf
    data = weights.data
    if tfidf.sublinear_tf:
        np.log(data, data)
        data += 1.0
    if hasattr(tfidf, "idf_"):
        data *= tfidf.idf_[weights.indices]
    if tfidf.norm is not None:
        _ROW_NORMALISERS[tfidf.norm](weights)
    return weights


def _numeric_step(step: Any) -> Any | None:
    """The arithmetic of one numeric step on a 2-D array, or None if it is not mirrored."""
    if isinstance(step, FunctionTransformer):
        if step.validate or step.func is None or step.kw_args:
            return None
        func = step.func
        return lambda x: func(x)
    if isinstance(step, StandardScaler):
        mean = step.mean_ if step.with_mean else None
        scale = step.scale_ if step.with_std else None

        def standardise(x: np.ndarray) -> np.ndarray:
            if x.dtype not in (np.float32, np.float64):
                x = x.astype(np.float64)
            elif not x.flags.writeable:
                x = x.copy()
            if mean is not None:
                x -= mean.astype(x.dtype)
            if scale is not None:
                x /= scale.astype(x.dtype)
            return x

        return standardise
    return None


class DirectLinearScorer:
    """The fitted arithmetic of TF-IDF (+ numeric) -> binary LogisticRegression, no sklearn calls.

    Raises UnsupportedPipelineError for any other shape. The decision value is summed as
    `LogisticRegression.decision_function` sums it over the stacked sparse matrix: from 0,
    the text branch's terms in column order (scipy's CSR product), then each stored
    (non-zero) numeric term in column order, then the intercept.
    """

    name = "direct"

    def __init__(
        self, pipeline: Any, positive_index: int, use_case: ServedUseCase | None = None
    ) -> None:
        fast = FastPipelineScorer(pipeline, positive_index, use_case)
        final = fast._final
        if fast._middle:
            raise UnsupportedPipelineError("steps between the ColumnTransformer and the classifier")
        if not fast._sparse_output:
            raise UnsupportedPipelineError("the ColumnTransformer's output is dense")
        if not isinstance(final, LogisticRegression) or len(final.classes_) != 2:
            raise UnsupportedPipelineError("the classifier is not a binary LogisticRegression")
        text, *numeric = fast._branches
        if not (isinstance(text.columns, str) and type(text.transformer) is TfidfVectorizer):
            raise UnsupportedPipelineError(
                "the first branch is not a TfidfVectorizer on one column"
            )
        vocabulary_size = len(text.transformer.vocabulary_)
        steps: list[tuple[_Branch, list[Any], int]] = []
        for branch in numeric:
            chain = branch.transformer
            parts = (
                [step for _, step in chain.steps if step not in (None, "passthrough")]
                if isinstance(chain, Pipeline)
                else [chain]
            )
            functions = [_numeric_step(part) for part in parts]
            if isinstance(branch.columns, str) or any(f is None for f in functions):
                raise UnsupportedPipelineError(f"numeric branch {chain!r} is not mirrored")
            steps.append((branch, functions, len(branch.columns)))
        coef = np.asarray(final.coef_, dtype=np.float64)
        if coef.shape != (1, vocabulary_size + sum(width for _, _, width in steps)):
            raise UnsupportedPipelineError(
                "the classifier's coefficients do not match the branches"
            )
        self._fast = fast
        self._vectoriser = text.transformer
        self._text_column: str = text.columns
        self._numeric = tuple(steps)
        self._text_coef = coef[0, :vocabulary_size].reshape(-1, 1)
        self._numeric_coef = coef[0, vocabulary_size:]
        self._intercept = np.asarray(final.intercept_, dtype=np.float64)
        self._positive_index = positive_index

    def score(self, columns: FeatureColumns) -> np.ndarray:
        weights = _tfidf_weights(self._vectoriser, list(columns[self._text_column]))
        decision = np.asarray(weights @ self._text_coef, dtype=np.float64).reshape(-1)
        offset = 0
        for branch, functions, width in self._numeric:
            values = self._fast._branch_input(branch, columns)
            for function in functions:
                values = function(values)
            for j in range(width):
                column = values[:, j]
                # Zeros are not stored in the stacked sparse matrix: they add no term.
                decision = np.where(
                    column != 0, decision + column * self._numeric_coef[offset + j], decision
                )
            offset += width
        decision = decision + self._intercept
        positive = expit(decision)
        if self._positive_index == 1:
            return np.ascontiguousarray(positive, dtype=np.float64)
        return np.ascontiguousarray(1 - positive, dtype=np.float64)


def reference_probabilities(
    pipeline: Any,
    positive_index: int,
    items: Sequence[Any],
    use_case: ServedUseCase | None = None,
) -> np.ndarray:
    """What the pipeline answers for each item alone, through build_features (the contract)."""
    uc = use_case or served_use_case()
    out = np.empty(len(items), dtype=np.float64)
    for i, item in enumerate(items):
        frame = uc.build_features(uc.raw_frame([item]))
        out[i] = float(np.asarray(pipeline.predict_proba(frame))[0, positive_index])
    return out


def check_items_for(use_case: ServedUseCase) -> tuple[Any, ...]:
    """The items a loaded model is self-checked on: the contract's, else CHECK_TEXTS for text."""
    if use_case.check_items:
        return use_case.check_items
    return CHECK_TEXTS if use_case.kind == "text" else ()


def compile_scorer(
    pipeline: Any,
    positive_index: int,
    check_texts: Sequence[Any] | None = None,
    use_case: ServedUseCase | None = None,
) -> Scorer:
    """The fastest scorer whose batch answers equal the pipeline's single answers exactly.

    `check_texts` (any items of the use case) default to `check_items_for(use_case)`. A
    tabular use case without EXAMPLE_ROWS has nothing to check with: it gets the pipeline's
    own predict_proba.
    """
    uc = use_case or served_use_case()
    items = tuple(check_texts) if check_texts is not None else check_items_for(uc)
    if not items:
        log.info("use case %s has no self-check rows: scoring through the pipeline", uc.name)
        return PipelineScorer(pipeline, positive_index, use_case=uc)
    expected = reference_probabilities(pipeline, positive_index, items, uc)
    columns = uc.featurize(items)
    candidates: list[Scorer] = []
    if uc.kind != "text":
        from serving.tabular_scoring import tabular_candidates

        candidates.extend(tabular_candidates(pipeline, positive_index, uc, items))
    for fast_kind in (DirectLinearScorer, FastPipelineScorer):
        try:
            candidates.append(fast_kind(pipeline, positive_index, uc))
        except UnsupportedPipelineError as error:
            log.info("%s scoring path not used: %s", fast_kind.name, error)
    candidates.append(PipelineScorer(pipeline, positive_index, use_case=uc))
    candidates.append(RowByRowScorer(pipeline, positive_index, use_case=uc))
    for candidate in candidates:
        got = candidate.score(columns)
        if got.shape == expected.shape and np.array_equal(got, expected):
            return candidate
        log.warning(
            "scoring path %r differs from the pipeline's own answers (max |diff| %.3g); "
            "trying a slower one",
            candidate.name,
            float(np.max(np.abs(got - expected))) if got.shape == expected.shape else np.inf,
        )
    raise ScorerMismatchError(
        "the model's predict_proba is not deterministic: even row-by-row scoring differs from "
        "scoring each review alone"
    )
