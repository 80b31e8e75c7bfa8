"""The use-case registry: every generic layer looks a use case up here by name.

A use case (review sentiment, credit default, yours) is *data plus two pure modules*:

- a **feature module** (`features/<name>.py`), pure pandas/numpy/stdlib, exposing
  ``RAW_COLUMNS``      tuple of the canonical raw input columns `build_features` reads;
  ``FEATURE_COLUMNS``  tuple of the columns it returns, in order;
  ``FEATURE_DTYPES``   dict column -> numpy/pandas dtype string, for every feature column;
  ``build_features(df) -> DataFrame``  same index as `df`, exactly FEATURE_COLUMNS with
  FEATURE_DTYPES, deterministic and total on hostile values (None, NaN, out-of-range numbers
  give a row, never an exception); a missing raw column raises `KeyError` naming it.
- a **contract module** (`contracts/<name>.py`), pandas/pandera/pydantic only, exposing
  ``USE_CASE``                  the registry name;
  ``FEATURE_CONTRACT_VERSION``  names the feature definitions; the registry records it on every
  model version and serving refuses a model trained with another one;
  ``FEATURE_FINGERPRINT`` and ``feature_fingerprint()``  a hash of `build_features` on fixed
  hostile inputs (tests recompute it: a feature change without a version bump fails);
  ``RAW_COLUMNS``, ``RAW_LABEL`` (int label column, 0/1), ``LABEL_NAMES`` ({0: .., 1: ..});
  ``ROW_ID``                    name of the stable row id column the Spark job writes;
  ``raw_schema``, ``feature_schema``, ``training_frame_schema``  Pandera schemas of the canonical
  raw rows, of `build_features`' output, and of the training frame (features + label + split);
  ``PredictRequest``            pydantic model of **one** raw row, with field ranges and allowed
  codes (the API validates with it, `/docs` shows it);
  optional ``SEGMENT_COLUMN``   a raw column naming a population segment (drift reports by it).

Everything else is config (`core/usecases.yaml`, or an extra registry): the kind (`text` picks
the text model families and text drift checks, `tabular` the tabular ones), the registered model
name, the folder holding `search_spaces.yaml`, `search.yaml`, `gate.yaml`, `drift.yaml` (a
missing file falls back to the platform default), the default source, and an optional
``explain`` hook ``"module:function"`` with signature
``explain(model, features: DataFrame) -> list[list[dict]]``: one list of reason dicts
(``{"feature": str, "contribution": float, ...}``, strongest first) per row, which serving adds to
each prediction as ``reasons``; and an optional ``synthetic`` generator ``"module:function"``
with signature ``generate(n: int, seed: int) -> DataFrame``: labelled rows in the layout of the
default source, which a training run without a data file trains on (offline demos).

A contract module may also expose ``row_reasons(raw) -> DataFrame`` (columns ``reason`` and
``detail``, None for a clean row) over canonical raw rows, and ``ROW_REASONS`` (its codes):
the validate_raw step quarantines the rows it flags before the Pandera contract runs.

Extra registries: ``DRIFTLOOP_USECASES`` holds paths (separated by ``os.pathsep``) of YAML files
in the format of `core/usecases.yaml`, or of folders containing a `usecases.yaml`. Each such
folder is put on ``sys.path`` (and on ``PYTHONPATH``, so Spark workers and subprocesses import
its modules too), which is how a use case is added without touching any generic module.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
REGISTRY_FILE = Path(__file__).with_name("usecases.yaml")
EXTRA_REGISTRIES_ENV = "DRIFTLOOP_USECASES"
DEFAULT_USE_CASE = "reviews"

Kind = Literal["text", "tabular"]
KINDS: tuple[str, ...] = ("text", "tabular")

# Config files a use case's folder may hold, and the platform defaults used when it does not.
CONFIG_FILES: dict[str, str] = {
    "search_spaces": "search_spaces.yaml",
    "search": "search.yaml",
    "gate": "gate.yaml",
    "drift": "drift.yaml",
}
DEFAULT_CONFIG: dict[str, Path] = {
    "search_spaces": REPO_ROOT / "training" / "config" / "search_spaces.yaml",
    "search": REPO_ROOT / "training" / "config" / "search.yaml",
    "gate": REPO_ROOT / "training" / "config" / "gate.yaml",
    "drift": REPO_ROOT / "monitoring" / "config" / "drift.yaml",
}

FEATURE_PROTOCOL: tuple[str, ...] = (
    "RAW_COLUMNS",
    "FEATURE_COLUMNS",
    "FEATURE_DTYPES",
    "build_features",
)
CONTRACT_PROTOCOL: tuple[str, ...] = (
    "USE_CASE",
    "FEATURE_CONTRACT_VERSION",
    "FEATURE_FINGERPRINT",
    "feature_fingerprint",
    "RAW_COLUMNS",
    "RAW_LABEL",
    "LABEL_NAMES",
    "ROW_ID",
    "raw_schema",
    "feature_schema",
    "training_frame_schema",
    "PredictRequest",
)


class UseCaseError(ValueError):
    """A use case is unknown, or its registry entry or modules break the protocol."""


@dataclass(frozen=True)
class UseCase:
    """One registry entry, with its modules imported on first use."""

    name: str
    kind: Kind
    feature_module: str
    contract_module: str
    default_model_name: str
    config_paths: Mapping[str, Path]
    default_source: str | None = None
    explain_ref: str | None = None
    synthetic_ref: str | None = None
    description: str = ""
    registry_file: Path = field(default=REGISTRY_FILE, compare=False)

    @property
    def features(self) -> ModuleType:
        """The feature module (`build_features`, `FEATURE_COLUMNS`, ...)."""
        return _import(self.feature_module, self)

    @property
    def contract(self) -> ModuleType:
        """The contract module (schemas, `PredictRequest`, version, fingerprint)."""
        return _import(self.contract_module, self)

    @property
    def model_name(self) -> str:
        """Registered model name: `DRIFTLOOP_MODEL_NAME_<NAME>` wins over the registry's value.

        For the default use case `DRIFTLOOP_MODEL_NAME` is honoured too, as before use cases
        existed.
        """
        specific = os.environ.get(f"DRIFTLOOP_MODEL_NAME_{self.name.upper()}")
        if specific:
            return specific
        if self.name == DEFAULT_USE_CASE and os.environ.get("DRIFTLOOP_MODEL_NAME"):
            return os.environ["DRIFTLOOP_MODEL_NAME"]
        return self.default_model_name

    def config_path(self, key: str) -> Path:
        """Path of one config file (`search_spaces`, `search`, `gate`, `drift`)."""
        if key not in CONFIG_FILES:
            raise UseCaseError(f"unknown config key {key!r}; one of {sorted(CONFIG_FILES)}")
        return self.config_paths[key]

    @cached_property
    def explain(self) -> Callable[[Any, Any], list[list[dict[str, Any]]]] | None:
        """The reason-code hook named by `explain` in the registry, or None."""
        if not self.explain_ref:
            return None
        module_name, _, func_name = self.explain_ref.partition(":")
        func = getattr(_import(module_name, self), func_name, None)
        if not callable(func):
            raise UseCaseError(
                f"use case {self.name!r}: explain {self.explain_ref!r} is not a callable "
                f"(registry {self.registry_file})"
            )
        return func  # type: ignore[no-any-return]

    @property
    def synthetic(self) -> Callable[..., Any] | None:
        """The synthetic-data generator named by `synthetic` in the registry, or None."""
        if not self.synthetic_ref:
            return None
        module_name, _, func_name = self.synthetic_ref.partition(":")
        func = getattr(_import(module_name, self), func_name, None)
        if not callable(func):
            raise UseCaseError(
                f"use case {self.name!r}: synthetic {self.synthetic_ref!r} is not a callable "
                f"(registry {self.registry_file})"
            )
        return func  # type: ignore[no-any-return]

    def check(self) -> None:
        """Import both modules and verify they expose the protocol; raise UseCaseError if not."""
        missing_f = [a for a in FEATURE_PROTOCOL if not hasattr(self.features, a)]
        missing_c = [a for a in CONTRACT_PROTOCOL if not hasattr(self.contract, a)]
        problems = []
        if missing_f:
            problems.append(f"feature module {self.feature_module} lacks {missing_f}")
        if missing_c:
            problems.append(f"contract module {self.contract_module} lacks {missing_c}")
        if not problems:
            feats, contract = self.features, self.contract
            if self.name != contract.USE_CASE:
                problems.append(f"{self.contract_module}.USE_CASE is {contract.USE_CASE!r}")
            if tuple(feats.FEATURE_COLUMNS) != tuple(feats.FEATURE_DTYPES):
                problems.append("FEATURE_DTYPES must list FEATURE_COLUMNS, in the same order")
            if tuple(feats.RAW_COLUMNS) != tuple(contract.RAW_COLUMNS):
                problems.append("RAW_COLUMNS differ between the feature and contract modules")
            if sorted(contract.LABEL_NAMES) != [0, 1]:
                problems.append("LABEL_NAMES must map 0 and 1 (binary use cases only)")
        if problems:
            raise UseCaseError(f"use case {self.name!r}: " + "; ".join(problems))


def _import(module_name: str, use_case: UseCase) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise UseCaseError(
            f"use case {use_case.name!r}: cannot import {module_name!r} ({exc}); registry "
            f"{use_case.registry_file}"
        ) from exc


def _extra_registry_files() -> list[Path]:
    value = os.environ.get(EXTRA_REGISTRIES_ENV, "")
    files = []
    for part in filter(None, value.split(os.pathsep)):
        path = Path(part).expanduser().resolve()
        if path.is_dir():
            path = path / "usecases.yaml"
        if not path.is_file():
            raise UseCaseError(f"{EXTRA_REGISTRIES_ENV} names {part!r}, which has no registry file")
        files.append(path)
    return files


def _make_importable(folder: Path) -> None:
    """Put an extra registry's folder on sys.path and PYTHONPATH (Spark workers, subprocesses)."""
    entry = str(folder)
    if entry not in sys.path:
        sys.path.insert(0, entry)
    current = os.environ.get("PYTHONPATH", "")
    if entry not in current.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [entry, current]))


def _parse_entry(name: str, raw: Any, registry: Path, base: Path) -> UseCase:
    where = f"{registry}: use_cases.{name}"
    if not isinstance(raw, dict):
        raise UseCaseError(f"{where} must be a mapping")
    missing = [k for k in ("kind", "features", "contract", "model_name") if not raw.get(k)]
    if missing:
        raise UseCaseError(f"{where} lacks {missing}")
    if raw["kind"] not in KINDS:
        raise UseCaseError(f"{where}.kind is {raw['kind']!r}; one of {list(KINDS)}")
    unknown = set(raw) - {
        "kind",
        "features",
        "contract",
        "model_name",
        "config_dir",
        "config",
        "default_source",
        "explain",
        "synthetic",
        "description",
    }
    if unknown:
        raise UseCaseError(f"{where} has unknown key(s) {sorted(unknown)}")
    config_dir = (base / raw["config_dir"]).resolve() if raw.get("config_dir") else None
    overrides = raw.get("config") or {}
    bad = set(overrides) - set(CONFIG_FILES)
    if bad:
        raise UseCaseError(f"{where}.config has unknown key(s) {sorted(bad)}")
    paths: dict[str, Path] = {}
    for key, file_name in CONFIG_FILES.items():
        if key in overrides:
            path = (base / overrides[key]).resolve()
            if not path.is_file():
                raise UseCaseError(f"{where}.config.{key}: no file {path}")
        elif config_dir is not None and (config_dir / file_name).is_file():
            path = config_dir / file_name
        else:
            path = DEFAULT_CONFIG[key]
        paths[key] = path
    return UseCase(
        name=name,
        kind=raw["kind"],
        feature_module=str(raw["features"]),
        contract_module=str(raw["contract"]),
        default_model_name=str(raw["model_name"]),
        config_paths=paths,
        default_source=raw.get("default_source"),
        explain_ref=raw.get("explain"),
        synthetic_ref=raw.get("synthetic"),
        description=str(raw.get("description", "")),
        registry_file=registry,
    )


def _read_registry(path: Path, base: Path) -> dict[str, UseCase]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UseCaseError(f"{path} is not valid YAML: {exc}") from exc
    entries = data.get("use_cases") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise UseCaseError(f"{path} needs a top-level 'use_cases' mapping")
    return {name: _parse_entry(name, raw, path, base) for name, raw in entries.items()}


def load_registry() -> dict[str, UseCase]:
    """All use cases: the built-in registry, then every extra registry (later names win).

    Parsed once per value of DRIFTLOOP_USECASES (lookups happen on hot paths); the extra
    folders are put back on sys.path on every call, since tests may restore sys.path.
    """
    extras = tuple(_extra_registry_files())
    for extra in extras:
        _make_importable(extra.parent)
    return dict(_cached_registry(extras))


@lru_cache(maxsize=16)
def _cached_registry(extras: tuple[Path, ...]) -> dict[str, UseCase]:
    use_cases = _read_registry(REGISTRY_FILE, REPO_ROOT)
    for extra in extras:
        use_cases.update(_read_registry(extra, extra.parent))
    return use_cases


def use_case_names() -> list[str]:
    """Registered names, the default first (the DAG Params' enum)."""
    names = list(load_registry())
    return sorted(names, key=lambda n: (n != DEFAULT_USE_CASE, names.index(n)))


def get_use_case(name: str | None = None) -> UseCase:
    """The use case called `name` (default `reviews`); UseCaseError lists the known ones."""
    name = name or DEFAULT_USE_CASE
    registry = load_registry()
    if name not in registry:
        raise UseCaseError(
            f"unknown use case {name!r}; registered: {sorted(registry)} (add one in "
            f"core/usecases.yaml or through {EXTRA_REGISTRIES_ENV})"
        )
    return registry[name]
