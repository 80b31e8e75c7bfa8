"""The model zoo: the model families the search compares, each one scikit-learn pipeline.

Every built-in family is a text family: a `Pipeline` over the frame a text use
case's `build_features` returns (one text column + numeric signals, named by
its `FeatureLayout`) with the same shape:

    features    ColumnTransformer: word (and optionally character) n-gram
                vectorisers on `text_clean`, the numeric signals scaled.
                Fitted without looking at labels, so the tuner may fit it once
                and reuse it across trials (see training.tune).
    [nb]        NB-SVM only: log-count-ratio weights (Wang & Manning 2012).
    classifier  the family's estimator; `predict_proba[:, 1]` is P(positive).

What a family is built from, its defaults and its search dimensions are data in
`training/config/search_spaces.yaml`; this module turns a parameter dict into
an unfitted pipeline and checks that the dict only names known parameters.
A use case's search_spaces.yaml may name `builders: <module>` to bring its
own families (tabular ones, for instance); see `ExternalBuilder`.

Serving imports `features`, `contracts` and `serving`, never `training`, and
loads the stored object with `mlflow.sklearn.load_model`. So what is logged
must hold scikit-learn, numpy and scipy objects only. All families are built
from stock estimators except the NB-SVM weighting, which needs the labels to
fit; `LogCountRatio` does that fitting and keeps its result in a stock
`TfidfTransformer` (whose `idf_` vector is exactly a per-column weight), and
`to_servable` swaps the fitted `LogCountRatio` for that transformer before
the model is logged. The prediction is bit-for-bit the same.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import yaml
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import TruncatedSVD
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfTransformer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.naive_bayes import ComplementNB, MultinomialNB
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, StandardScaler
from sklearn.svm import LinearSVC
from sklearn.utils.validation import check_is_fitted

from core.usecases import DEFAULT_USE_CASE, get_use_case

SEARCH_SPACES = Path(__file__).with_name("config") / "search_spaces.yaml"
FEATURES_STEP = "features"
CLASSIFIER_STEP = "classifier"
# Top-level packages a logged model may reference; anything else (this
# project's packages above all) would break loading in the serving process.
SERVABLE_PACKAGES = frozenset(
    # lightgbm (a tabular family; in the serving requirements) keeps its native handle in a
    # ctypes pointer, which pickling drops and loading recreates.
    {"sklearn", "numpy", "scipy", "builtins", "collections", "copyreg", "lightgbm", "ctypes"}
)
DIMENSION_TYPES = ("float", "int", "categorical")
NUMERIC_SCALINGS = ("standard", "minmax", "raw")


class ZooError(ValueError):
    """A family, parameter or search space the zoo cannot build."""


# ---- which columns a model reads ------------------------------------------------------

TEXT_DTYPES = frozenset({"object", "string", "str"})


@dataclass(frozen=True)
class FeatureLayout:
    """The model-input columns of a use case by role: one text column (text use cases),
    numeric columns, and categorical (string) columns of a tabular use case."""

    text: str | None
    numeric: tuple[str, ...]
    categorical: tuple[str, ...] = ()


def layout_for(use_case: str = DEFAULT_USE_CASE) -> FeatureLayout:
    """The FeatureLayout of a registered use case, from its FEATURE_COLUMNS / FEATURE_DTYPES."""
    return _layout_for(use_case, str(get_use_case(use_case).registry_file))


@lru_cache(maxsize=16)
def _layout_for(use_case: str, registry_file: str) -> FeatureLayout:
    uc = get_use_case(use_case)
    columns, dtypes = uc.features.FEATURE_COLUMNS, uc.features.FEATURE_DTYPES
    strings = tuple(c for c in columns if str(dtypes[c]) in TEXT_DTYPES)
    numeric = tuple(c for c in columns if c not in strings)
    if uc.kind == "text":
        if len(strings) != 1:
            raise ZooError(
                f"text use case {use_case!r} needs exactly one text feature column, got {strings}"
            )
        return FeatureLayout(text=strings[0], numeric=numeric)
    return FeatureLayout(text=None, numeric=numeric, categorical=strings)


# A use case may bring its own families: `builders: <module>` in its search_spaces.yaml names a
# module whose BUILDERS maps a family name to build(params, seed, layout) -> Pipeline, the first
# step named FEATURES_STEP (fitted without labels: the search caches it across trials).
ExternalBuilder = Callable[[dict[str, Any], int, FeatureLayout], Pipeline]


# ---- search spaces (data) -------------------------------------------------------------


@dataclass(frozen=True)
class Dimension:
    """One search dimension: a float/int range or a list of categorical choices."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """Ask an Optuna trial (anything with suggest_float/int/categorical) for a value."""
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.type == "int":
            low, high = self._bounds()
            return trial.suggest_int(
                self.name, int(low), int(high), step=self.step or 1, log=self.log
            )
        return trial.suggest_categorical(self.name, list(self.choices))

    def contains(self, value: Any) -> bool:
        """True when `value` lies in this dimension (used to check defaults are searchable)."""
        if self.type == "categorical":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        low, high = self._bounds()
        return float(low) <= float(value) <= float(high)

    def _bounds(self) -> tuple[float, float]:
        if self.low is None or self.high is None:
            raise ZooError(f"dimension {self.name!r} ({self.type}) needs low and high")
        return self.low, self.high


@dataclass(frozen=True)
class FamilySpace:
    """A family's one-line summary, complete default parameters and search dimensions."""

    name: str
    summary: str
    defaults: dict[str, Any]
    search: dict[str, Dimension] = field(default_factory=dict)

    def suggest(self, trial: Any) -> dict[str, Any]:
        """One value per search dimension, in the order the YAML lists them."""
        return {name: dim.suggest(trial) for name, dim in self.search.items()}

    def resolve(self, params: dict[str, Any] | None) -> dict[str, Any]:
        """Defaults overlaid with `params`; an unknown name raises ZooError."""
        unknown = sorted(set(params or {}) - set(self.defaults))
        if unknown:
            raise ZooError(
                f"family {self.name!r} has no parameters {unknown}; known: "
                f"{sorted(self.defaults)} (see {SEARCH_SPACES})"
            )
        return {**self.defaults, **(params or {})}


@dataclass(frozen=True)
class SearchSpaces:
    """Everything in search_spaces.yaml: named token patterns and the families in order."""

    token_patterns: dict[str, str]
    families: dict[str, FamilySpace]
    path: Path
    external: dict[str, ExternalBuilder] = field(default_factory=dict)


def _dimension(family: str, name: str, spec: Any, path: Path) -> Dimension:
    where = f"{path}: families.{family}.search.{name}"
    if not isinstance(spec, dict) or spec.get("type") not in DIMENSION_TYPES:
        raise ZooError(
            f"{where} must be a mapping with type one of {DIMENSION_TYPES}, got {spec!r}"
        )
    kind = spec["type"]
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ZooError(f"{where}: categorical needs a non-empty list `choices`")
        return Dimension(name, kind, choices=tuple(choices))
    low, high = spec.get("low"), spec.get("high")
    if not isinstance(low, int | float) or not isinstance(high, int | float) or low > high:
        raise ZooError(f"{where}: {kind} needs numbers low <= high, got low={low!r} high={high!r}")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise ZooError(f"{where}: a log-scaled range needs low > 0, got {low}")
    step = spec.get("step")
    if kind == "int" and not (isinstance(low, int) and isinstance(high, int)):
        raise ZooError(f"{where}: int bounds must be integers, got {low!r}..{high!r}")
    return Dimension(name, kind, low=low, high=high, log=log, step=step)


def load_search_spaces(
    path: str | Path = SEARCH_SPACES, layout: FeatureLayout | None = None
) -> SearchSpaces:
    """Parse and check search_spaces.yaml; every family's defaults must build a pipeline.

    `layout` is the use case's FeatureLayout the defaults are built against (default: the
    default use case's).
    """
    return _load_search_spaces(Path(path).resolve(), layout or layout_for())


def _external_builders(path: Path, module_name: Any) -> dict[str, ExternalBuilder]:
    if module_name is None:
        return {}
    try:
        module = importlib.import_module(str(module_name))
    except ImportError as exc:
        raise ZooError(f"{path}: builders module {module_name!r} does not import: {exc}") from exc
    builders = getattr(module, "BUILDERS", None)
    if not isinstance(builders, dict):
        raise ZooError(f"{path}: builders module {module_name!r} has no BUILDERS mapping")
    return dict(builders)


@lru_cache(maxsize=8)
def _load_search_spaces(path: Path, layout: FeatureLayout) -> SearchSpaces:
    if not path.is_file():
        raise ZooError(f"search space file {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    patterns = data.get("token_patterns", {})
    families_raw = data.get("families")
    if not isinstance(patterns, dict) or not isinstance(families_raw, dict) or not families_raw:
        raise ZooError(f"{path} must define a mapping `families` (and `token_patterns` for text)")
    external = _external_builders(path, data.get("builders"))
    families: dict[str, FamilySpace] = {}
    for name, spec in families_raw.items():
        if name not in BUILDERS and name not in external:
            known = sorted({*BUILDERS, *external})
            raise ZooError(f"{path}: family {name!r} has no builder; known: {known}")
        if not isinstance(spec, dict) or not isinstance(spec.get("defaults"), dict):
            raise ZooError(f"{path}: families.{name} needs a `defaults` mapping")
        defaults = dict(spec["defaults"])
        search = {
            dim: _dimension(name, dim, dim_spec, path)
            for dim, dim_spec in (spec.get("search") or {}).items()
        }
        unknown = sorted(set(search) - set(defaults))
        if unknown:
            raise ZooError(
                f"{path}: families.{name}.search names {unknown}, which are not in its defaults"
            )
        outside = [d for d, dim in search.items() if not dim.contains(defaults[d])]
        if outside:
            raise ZooError(
                f"{path}: families.{name} defaults for {outside} lie outside their search "
                "dimensions (the defaults are the first trial of every study)"
            )
        families[name] = FamilySpace(name, str(spec.get("summary", "")), defaults, search)
    spaces = SearchSpaces({k: str(v) for k, v in patterns.items()}, families, path, external)
    for name in families:
        try:
            build_pipeline(name, None, spaces=spaces, layout=layout)
        except (ZooError, KeyError, TypeError) as exc:
            raise ZooError(f"{path}: defaults of family {name!r} do not build: {exc}") from exc
    return spaces


def search_spaces_for(use_case: str = DEFAULT_USE_CASE) -> SearchSpaces:
    """The checked search spaces of a registered use case (its config's search_spaces.yaml)."""
    uc = get_use_case(use_case)
    return load_search_spaces(uc.config_path("search_spaces"), layout_for(use_case))


def family_names(path: str | Path = SEARCH_SPACES, *, use_case: str | None = None) -> list[str]:
    """The families in the order search_spaces.yaml lists them (of `use_case` when given)."""
    if use_case is not None:
        return list(search_spaces_for(use_case).families)
    return list(load_search_spaces(path).families)


def family_space(
    family: str, path: str | Path = SEARCH_SPACES, *, use_case: str | None = None
) -> FamilySpace:
    """The FamilySpace of `family`; an unknown name raises ZooError listing the known ones."""
    spaces = search_spaces_for(use_case) if use_case is not None else load_search_spaces(path)
    if family not in spaces.families:
        raise ZooError(f"unknown model family {family!r}; known: {list(spaces.families)}")
    return spaces.families[family]


# ---- NB-SVM weighting -----------------------------------------------------------------


class LogCountRatio(TransformerMixin, BaseEstimator):
    """Scale each column by its log-count ratio r = log(p/|p|1) - log(q/|q|1).

    p and q are `alpha` plus the column sums over positive and negative rows
    (Wang & Manning 2012, "Baselines and Bigrams", section 2.1). A linear
    classifier on x * r is their NB-SVM (here with a logistic loss, which
    gives probabilities directly). Inputs must be non-negative (counts,
    binary indicators, tf-idf, min-max scaled signals).

    The fitted weights live in `weights_`, a stock TfidfTransformer whose
    `idf_` is r; `transform` delegates to it and `servable()` returns it.
    """

    def __init__(self, alpha: float = 1.0, norm: str | None = None) -> None:
        self.alpha = alpha
        self.norm = norm

    def fit(self, X: Any, y: Any) -> LogCountRatio:
        if self.alpha <= 0:
            raise ValueError(f"LogCountRatio alpha must be > 0, got {self.alpha}")
        labels = np.asarray(y)
        if not set(np.unique(labels)) <= {0, 1}:
            raise ValueError(f"LogCountRatio needs 0/1 labels, got {np.unique(labels)[:5]}")
        matrix = sp.csr_array(X) if not sp.issparse(X) else X.tocsr()
        if matrix.nnz and matrix.data.min() < 0:
            raise ValueError(
                "LogCountRatio needs non-negative features (counts, tf-idf, min-max scaled); "
                f"got a minimum of {matrix.data.min()}"
            )
        pos = self.alpha + np.asarray(matrix[labels == 1].sum(axis=0), dtype=np.float64).ravel()
        neg = self.alpha + np.asarray(matrix[labels == 0].sum(axis=0), dtype=np.float64).ravel()
        ratio = np.log(pos / pos.sum()) - np.log(neg / neg.sum())
        weights = TfidfTransformer(norm=self.norm, use_idf=True, smooth_idf=False)
        weights.idf_ = ratio
        weights.n_features_in_ = matrix.shape[1]
        self.weights_ = weights
        self.n_features_in_ = matrix.shape[1]
        return self

    def transform(self, X: Any) -> Any:
        check_is_fitted(self, "weights_")
        return self.weights_.transform(X)

    def servable(self) -> TfidfTransformer:
        """The fitted stock transformer computing the same output."""
        check_is_fitted(self, "weights_")
        return self.weights_


# ---- builders -------------------------------------------------------------------------


def _count_or_share(name: str, value: Any) -> int | float:
    # The vectorisers read an int as a document count and a float as a share.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ZooError(f"{name} must be an int (documents) or a float (share), got {value!r}")
    return value


def _optional_int(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ZooError(f"{name} must be null or a positive integer, got {value!r}")
    return value


def _text_branches(
    p: dict[str, Any], spaces: SearchSpaces, seed: int, layout: FeatureLayout
) -> list[tuple[str, Any, Any]]:
    if layout.text is None:
        raise ZooError("this family reads a text feature column; the use case has none")
    pattern_name = p["token_pattern"]
    if pattern_name not in spaces.token_patterns:
        raise ZooError(
            f"token_pattern {pattern_name!r} is not defined; known: {sorted(spaces.token_patterns)}"
        )
    if int(p["word_ngram_max"]) < 1:
        raise ZooError(f"word_ngram_max must be >= 1, got {p['word_ngram_max']!r}")
    common = {
        "lowercase": False,  # text_clean is already lower-cased
        "binary": bool(p["binary"]),
        "use_idf": bool(p["use_idf"]),
        "sublinear_tf": bool(p["sublinear_tf"]),
        "norm": p["norm"],
        "dtype": np.float32,
    }
    word = TfidfVectorizer(
        ngram_range=(1, int(p["word_ngram_max"])),
        token_pattern=spaces.token_patterns[pattern_name],
        min_df=_count_or_share("min_df", p["min_df"]),
        max_df=_count_or_share("max_df", p["max_df"]),
        max_features=_optional_int("max_features", p["max_features"]),
        **common,
    )
    vectorisers: list[tuple[str, Any]] = [("words", word)]
    char_max = int(p["char_ngram_max"])
    if char_max > 0:
        char_min = int(p["char_ngram_min"])
        if not 1 <= char_min <= char_max:
            raise ZooError(
                f"need 1 <= char_ngram_min <= char_ngram_max, got {char_min}, {char_max}"
            )
        chars = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=(char_min, char_max),
            min_df=_count_or_share("char_min_df", p["char_min_df"]),
            max_features=_optional_int("char_max_features", p["char_max_features"]),
            **common,
        )
        vectorisers.append(("chars", chars))
    components = p.get("svd_components")
    branches: list[tuple[str, Any, Any]] = []
    for name, vectoriser in vectorisers:
        step: Any = vectoriser
        if components:
            step = Pipeline(
                [
                    ("vectorise", vectoriser),
                    ("svd", TruncatedSVD(n_components=int(components), random_state=seed)),
                ]
            )
        # A plain column name (not a list) hands the vectoriser a 1-D series of texts.
        branches.append((name, step, layout.text))
    return branches


def _numeric_branch(p: dict[str, Any], layout: FeatureLayout) -> tuple[str, Any, Any] | None:
    if not p["use_numeric"]:
        return None
    scaling = p["numeric_scaling"]
    if scaling not in NUMERIC_SCALINGS:
        raise ZooError(f"numeric_scaling must be one of {NUMERIC_SCALINGS}, got {scaling!r}")
    if scaling == "raw":
        return ("numeric", "passthrough", list(layout.numeric))
    # The signals are counts and ratios with long tails: log1p first.
    scaler = StandardScaler() if scaling == "standard" else MinMaxScaler(clip=True)
    numeric = Pipeline(
        [
            ("log1p", FunctionTransformer(np.log1p, feature_names_out="one-to-one")),
            ("scale", scaler),
        ]
    )
    return ("numeric", numeric, list(layout.numeric))


def _features(
    p: dict[str, Any], spaces: SearchSpaces, seed: int, layout: FeatureLayout
) -> ColumnTransformer:
    branches = _text_branches(p, spaces, seed, layout)
    numeric = _numeric_branch(p, layout)
    if numeric is not None:
        branches.append(numeric)
    return ColumnTransformer(branches, remainder="drop")


def _class_weight(value: Any) -> str | None:
    if value not in (None, "balanced"):
        raise ZooError(f"class_weight must be null or 'balanced', got {value!r}")
    return value


def _logreg(p: dict[str, Any], seed: int) -> list[tuple[str, Any]]:
    # liblinear's dual solver is the fast one when features outnumber rows (text).
    return [
        (
            CLASSIFIER_STEP,
            LogisticRegression(
                C=float(p["C"]),
                solver="liblinear",
                dual=bool(p["dual"]),
                max_iter=int(p["max_iter"]),
                class_weight=_class_weight(p["class_weight"]),
                random_state=seed,
            ),
        )
    ]


def _nbsvm(p: dict[str, Any], seed: int) -> list[tuple[str, Any]]:
    return [
        ("nb", LogCountRatio(alpha=float(p["nb_alpha"]), norm=p["nb_norm"])),
        *_logreg(p, seed),
    ]


def _linear_svm(p: dict[str, Any], seed: int) -> list[tuple[str, Any]]:
    svm = LinearSVC(
        C=float(p["C"]),
        max_iter=int(p["max_iter"]),
        class_weight=_class_weight(p["class_weight"]),
        random_state=seed,
    )
    # Integer cv = StratifiedKFold without shuffling: deterministic.
    calibrated = CalibratedClassifierCV(
        svm, method=p["calibration"], cv=int(p["calibration_folds"]), ensemble=True
    )
    return [(CLASSIFIER_STEP, calibrated)]


def _naive_bayes(p: dict[str, Any], seed: int) -> list[tuple[str, Any]]:
    # Naive Bayes takes no class weights; "balanced" means uniform class priors instead of
    # the training shares, which is what weighting the classes equally does to its decision.
    fit_prior = _class_weight(p.get("class_weight")) is None
    variants: dict[str, Callable[[], Any]] = {
        "multinomial": lambda: MultinomialNB(alpha=float(p["alpha"]), fit_prior=fit_prior),
        "complement": lambda: ComplementNB(alpha=float(p["alpha"]), fit_prior=fit_prior),
    }
    if p["variant"] not in variants:
        raise ZooError(
            f"naive_bayes variant must be one of {sorted(variants)}, got {p['variant']!r}"
        )
    if p["use_numeric"] and p["numeric_scaling"] != "minmax":
        raise ZooError("naive_bayes needs non-negative inputs: set numeric_scaling to minmax")
    return [(CLASSIFIER_STEP, variants[p["variant"]]())]


def _sgd_elasticnet(p: dict[str, Any], seed: int) -> list[tuple[str, Any]]:
    if p["loss"] not in ("log_loss", "modified_huber"):
        raise ZooError(
            f"sgd loss must be log_loss or modified_huber (probabilities), got {p['loss']!r}"
        )
    return [
        (
            CLASSIFIER_STEP,
            SGDClassifier(
                loss=p["loss"],
                penalty="elasticnet",
                alpha=float(p["alpha"]),
                l1_ratio=float(p["l1_ratio"]),
                max_iter=int(p["max_iter"]),
                tol=float(p["tol"]),
                average=bool(p["average"]),
                class_weight=_class_weight(p["class_weight"]),
                random_state=seed,
            ),
        )
    ]


def _svd_gbm(p: dict[str, Any], seed: int) -> list[tuple[str, Any]]:
    if not p.get("svd_components"):
        raise ZooError("svd_gbm needs svd_components > 0 (trees on a dense text reduction)")
    return [
        (
            CLASSIFIER_STEP,
            HistGradientBoostingClassifier(
                learning_rate=float(p["learning_rate"]),
                max_iter=int(p["max_iter"]),
                max_leaf_nodes=int(p["max_leaf_nodes"]),
                min_samples_leaf=int(p["min_samples_leaf"]),
                l2_regularization=float(p["l2_regularization"]),
                class_weight=_class_weight(p.get("class_weight")),
                early_stopping=False,
                random_state=seed,
            ),
        )
    ]


BUILDERS: dict[str, Callable[[dict[str, Any], int], list[tuple[str, Any]]]] = {
    "logreg": _logreg,
    "nbsvm": _nbsvm,
    "linear_svm": _linear_svm,
    "naive_bayes": _naive_bayes,
    "sgd_elasticnet": _sgd_elasticnet,
    "svd_gbm": _svd_gbm,
}


def build_pipeline(
    family: str,
    params: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    spaces: SearchSpaces | None = None,
    layout: FeatureLayout | None = None,
) -> Pipeline:
    """Unfitted pipeline of `family` with its defaults overlaid by `params`.

    `seed` is the random_state of every estimator that has one, so two builds
    with the same arguments fit to the same model. `layout` names the columns
    the pipeline reads (default: the default use case's).
    """
    layout = layout or layout_for()
    spaces = spaces or load_search_spaces(layout=layout)
    if family not in spaces.families:
        raise ZooError(f"unknown model family {family!r}; known: {list(spaces.families)}")
    p = spaces.families[family].resolve(params)
    if family in spaces.external:
        pipeline = spaces.external[family](p, seed, layout)
        if not isinstance(pipeline, Pipeline) or pipeline.steps[0][0] != FEATURES_STEP:
            raise ZooError(
                f"builder of family {family!r} must return a Pipeline whose first step is "
                f"{FEATURES_STEP!r}"
            )
        return pipeline
    head = BUILDERS[family](p, seed)
    return Pipeline([(FEATURES_STEP, _features(p, spaces, seed, layout)), *head])


# ---- servable export ------------------------------------------------------------------


def _swap_custom(step: Any) -> Any:
    if isinstance(step, LogCountRatio):
        return step.servable()
    if isinstance(step, Pipeline):
        return Pipeline([(name, _swap_custom(s)) for name, s in step.steps])
    return step


def to_servable(model: Pipeline) -> Pipeline:
    """The fitted `model` with project-defined steps replaced by stock equivalents.

    Returns a new Pipeline sharing the fitted steps (no copy of the
    vocabularies). Raises ZooError if anything defined outside scikit-learn,
    numpy or scipy remains, since serving could not unpickle it.
    """
    servable = _swap_custom(model)
    leftovers = sorted(non_servable_components(servable))
    if leftovers:
        raise ZooError(
            f"the model still holds {leftovers}, which the serving process cannot import; "
            "give those steps a servable() export or build them from stock estimators"
        )
    return servable


def _walk(obj: Any, seen: set[int]) -> Iterator[Any]:
    if id(obj) in seen or obj is None or isinstance(obj, str | bytes | int | float | bool):
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray | np.generic) or sp.issparse(obj):
        return
    if isinstance(obj, list | tuple | set | frozenset):
        for item in obj:
            yield from _walk(item, seen)
        return
    if isinstance(obj, dict):
        # Vocabularies map millions of strings to ints: nothing to find inside.
        if len(obj) <= 1000:
            for item in obj.values():
                yield from _walk(item, seen)
        return
    yield obj
    if hasattr(obj, "__dict__"):
        for item in vars(obj).values():
            yield from _walk(item, seen)


def non_servable_components(model: Any) -> set[str]:
    """Qualified names of classes/functions in `model` defined outside SERVABLE_PACKAGES."""
    found: set[str] = set()
    for obj in _walk(model, set()):
        kind = obj if isinstance(obj, type) else type(obj)
        for module in (kind.__module__, getattr(obj, "__module__", None)):
            if module and module.split(".")[0] not in SERVABLE_PACKAGES:
                name = getattr(obj, "__qualname__", kind.__qualname__)
                found.add(f"{module}.{name}")
    return found
