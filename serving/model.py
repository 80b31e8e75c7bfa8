"""The served model: resolve an alias in the registry, check it, load it, keep it.

`ModelHolder` owns the one model this process scores with. A load resolves
`models:/<name>@<alias>` to a concrete version, refuses the version before
downloading anything if its `feature_contract_version` tag differs from the
features this code computes, downloads and unpickles the scikit-learn pipeline,
and only then swaps it in. Requests read one immutable `LoadedModel` snapshot,
so a reload never mixes two versions inside one prediction.

`keep_model_loaded` is the background loop the app runs: it retries until a
model loads (so the API can start before the first model exists) and then
re-checks the alias (every 30 s by default) to pick up a newly promoted
champion. A new version is downloaded, unpickled and self-checked in a worker
thread while the old one keeps answering; the swap is one reference
assignment, so no request fails or waits for it.

Each load also compiles the model's scorer (`serving.scoring.compile_scorer`):
the fastest scoring path that reproduces the pipeline's own probabilities bit
for bit on a fixed set of reviews.

Garbage collection: a full cyclic collection with a large model in memory
takes hundreds of milliseconds, stalling every request. After the first load
the holder collects once and `gc.freeze()`s everything, so later collections
skip the model. A reload freezes the new model too; the old one is freed by
reference counting when the last batch using it finishes (frozen objects are
only exempt from the cycle collector, not from freeing), so only cyclic
garbage from the old model stays behind, a small amount per reload.

Only `mlflow-skinny` APIs are used (registry client, artifact download,
`mlflow.sklearn.load_model`): the serving image has no full MLflow.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
import mlflow.artifacts
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking.registry import UnsupportedModelRegistryStoreURIException

from contracts.history import ContractHistoryError, verify_served_model
from core.usecases import DEFAULT_USE_CASE, get_use_case
from serving.scoring import Scorer, ScorerMismatchError, compile_scorer
from serving.usecase import ServedUseCase, served_use_case

log = logging.getLogger(__name__)

CONTRACT_TAG = "feature_contract_version"
THRESHOLD_TAG = "decision_threshold"
FINGERPRINT_TAG = "feature_fingerprint"  # what the training run computed
POSITIVE_CLASS = 1
_NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})


class ModelLoadError(RuntimeError):
    """No model could be loaded; the message says why and what to do."""


class ModelNotFoundError(ModelLoadError):
    """The registry answered, but the alias does not point at a version (yet)."""


class RegistryUnavailableError(ModelLoadError):
    """The registry or the artifact store could not be reached or read."""


class IncompatibleModelError(ModelLoadError):
    """The model was trained on other features, or cannot score P(positive)."""


class ModelNotLoadedError(RuntimeError):
    """A prediction was asked for while no model is loaded."""


@dataclass(frozen=True)
class LoadedModel:
    """One loaded model version and where it came from; never mutated."""

    name: str
    alias: str
    version: str
    run_id: str | None
    feature_contract_version: str
    loaded_at: datetime
    load_seconds: float
    pipeline: Any
    positive_index: int
    scorer: Scorer
    alias_set_at: datetime | None = None
    # The version's `decision_threshold` tag (chosen on validation by training); None without one.
    decision_threshold: float | None = None

    def threshold(self, fallback: float) -> float:
        """P(positive) at or above which this model's label is positive."""
        return fallback if self.decision_threshold is None else self.decision_threshold

    @property
    def scoring_path(self) -> str:
        """Which scorer answers: "direct", "fast", "pipeline" or "pipeline-row-by-row"."""
        return self.scorer.name

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """P(positive) per row of a `build_features` frame."""
        return np.asarray(self.pipeline.predict_proba(features))[:, self.positive_index]


def _decision_threshold(tags: dict[str, str]) -> float | None:
    """The version's `decision_threshold` tag, when it is a probability strictly inside (0, 1)."""
    try:
        value = float(tags.get(THRESHOLD_TAG, ""))
    except ValueError:
        return None
    return value if 0.0 < value < 1.0 else None


def _alias_set_at(tags: dict[str, str]) -> datetime | None:
    """When the alias moved to this version: the `promoted_at` tag the gate and rollback write."""
    try:
        stamp = datetime.fromisoformat(tags.get("promoted_at", ""))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class ModelHolder:
    """Holds the model this process serves and the reason when there is none."""

    def __init__(
        self,
        tracking_uri: str,
        registry_uri: str | None = None,
        *,
        gc_freeze: bool = False,
        on_loaded: Callable[[LoadedModel], None] | None = None,
        on_failed: Callable[[str], None] | None = None,
        use_case: str = DEFAULT_USE_CASE,
    ) -> None:
        self.use_case: ServedUseCase = served_use_case(use_case)
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        self.gc_freeze = gc_freeze
        self.on_loaded = on_loaded
        self.on_failed = on_failed
        self.reloads = 0
        self._current: LoadedModel | None = None
        self._last_error: str | None = None
        self._load_lock = threading.Lock()
        self._collected_once = False

    # ---- state -------------------------------------------------------------

    @property
    def current(self) -> LoadedModel | None:
        """The model in use, or None before the first successful load."""
        return self._current

    @property
    def last_error(self) -> str | None:
        """Why the latest load attempt failed; None after a success."""
        return self._last_error

    @property
    def version(self) -> str | None:
        return self._current.version if self._current else None

    @property
    def run_id(self) -> str | None:
        return self._current.run_id if self._current else None

    @property
    def loaded_at(self) -> datetime | None:
        return self._current.loaded_at if self._current else None

    @property
    def load_seconds(self) -> float | None:
        return self._current.load_seconds if self._current else None

    def record_error(self, reason: str) -> None:
        """Remember why loading failed, for /ready and /model-info."""
        self._last_error = reason

    def not_ready_reason(self) -> str:
        """A sentence for /ready and 503 answers while no model is loaded."""
        if self._last_error:
            return f"no model loaded: {self._last_error}"
        return "no model loaded yet: the first load attempt has not finished"

    def clear(self, reason: str) -> None:
        """Stop holding a model (its alias was removed); `reason` is what /ready would say."""
        self._current = None
        self._last_error = reason

    def require(self) -> LoadedModel:
        """The current model, or ModelNotLoadedError with the reason."""
        model = self._current
        if model is None:
            raise ModelNotLoadedError(self.not_ready_reason())
        return model

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """P(positive) per row with the current model."""
        return self.require().predict_proba(features)

    # ---- loading -----------------------------------------------------------

    def _client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)

    def resolve(self, name: str, alias: str) -> ModelVersion:
        """The version `name@alias` points at, refused if its feature contract differs."""
        try:
            version = self._client().get_model_version_by_alias(name, alias)
        except UnsupportedModelRegistryStoreURIException as error:
            raise RegistryUnavailableError(
                f"cannot use registry {self.registry_uri} from this environment: it has "
                "mlflow-skinny, which reaches a registry only through an MLflow server; set "
                "MLFLOW_TRACKING_URI=http://<host>:<port>"
            ) from error
        except MlflowException as error:
            if error.error_code in _NOT_FOUND_CODES:
                raise ModelNotFoundError(
                    f"registry {self.registry_uri} has no version of model {name!r} with alias "
                    f"{alias!r} ({_first_line(error)}); train and promote a model first"
                ) from error
            raise RegistryUnavailableError(
                f"could not look up {name}@{alias} in registry {self.registry_uri}: "
                f"{_first_line(error)} (is the MLflow server up and MLFLOW_TRACKING_URI right?)"
            ) from error
        FEATURE_CONTRACT_VERSION = self.use_case.contract_version
        found = (version.tags or {}).get(CONTRACT_TAG)
        if found != FEATURE_CONTRACT_VERSION:
            what = f"tag {CONTRACT_TAG}={found!r}" if found else f"no {CONTRACT_TAG!r} tag"
            raise IncompatibleModelError(
                f"refused model {name!r} version {version.version} (alias {alias!r}): it has "
                f"{what}, but this server computes features {FEATURE_CONTRACT_VERSION!r}. "
                f"Retrain with the current features/ code and register the version with "
                f"{CONTRACT_TAG}={FEATURE_CONTRACT_VERSION!r}, or point {alias!r} at such a version"
            )
        try:
            verify_served_model(
                get_use_case(self.use_case.name).contract,
                found,
                (version.tags or {}).get(FINGERPRINT_TAG),
            )
        except ContractHistoryError as error:
            raise IncompatibleModelError(
                f"refused model {name!r} version {version.version} (alias {alias!r}): {error}"
            ) from error
        return version

    def _load_pipeline(self, name: str, version: str) -> Any:
        uri = f"models:/{name}/{version}"
        try:
            with tempfile.TemporaryDirectory(prefix="driftloop-model-") as tmp:
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=uri,
                    dst_path=tmp,
                    tracking_uri=self.tracking_uri,
                    registry_uri=self.registry_uri,
                )
                return mlflow.sklearn.load_model(local)
        except (MlflowException, OSError) as error:
            raise RegistryUnavailableError(
                f"could not download or unpickle {uri} from {self.tracking_uri}: "
                f"{_first_line(error)}"
            ) from error

    def load(self, name: str, alias: str) -> LoadedModel:
        """Resolve, check, download, compile and swap in `name@alias`; blocking (run in a thread).

        On failure the previous model (if any) stays in use, `last_error` says
        why, and the ModelLoadError propagates. Loads never overlap: a second
        caller waits for the first to finish.
        """
        with self._load_lock:
            try:
                loaded = self._build(name, alias)
            except ModelLoadError as error:
                self._last_error = str(error)
                if self.on_failed is not None:
                    self.on_failed(str(error))
                raise
            previous = self._current
            self._current = loaded
            self._last_error = None
            self.reloads += 1
            del previous
            self._settle_memory()
        log.info(
            "serving %s version %s (alias %s), loaded in %.2f s, scoring path %s",
            name,
            loaded.version,
            alias,
            loaded.load_seconds,
            loaded.scoring_path,
        )
        if self.on_loaded is not None:
            self.on_loaded(loaded)
        return loaded

    def _build(self, name: str, alias: str) -> LoadedModel:
        started = time.perf_counter()
        version = self.resolve(name, alias)
        pipeline = self._load_pipeline(name, version.version)
        classes = [int(c) for c in getattr(pipeline, "classes_", [])]
        if not hasattr(pipeline, "predict_proba") or POSITIVE_CLASS not in classes:
            raise IncompatibleModelError(
                f"refused model {name!r} version {version.version}: expected a classifier "
                f"with predict_proba and label classes [0, 1], got classes {classes}"
            )
        positive_index = classes.index(POSITIVE_CLASS)
        try:
            scorer = compile_scorer(pipeline, positive_index, use_case=self.use_case)
        except ScorerMismatchError as error:
            raise IncompatibleModelError(
                f"refused model {name!r} version {version.version}: {error}"
            ) from error
        except Exception as error:  # a pipeline that cannot score the self-check reviews
            raise IncompatibleModelError(
                f"refused model {name!r} version {version.version}: scoring the start-up "
                f"self-check reviews failed with {type(error).__name__}: {_first_line(error)}"
            ) from error
        return LoadedModel(
            name=name,
            alias=alias,
            version=str(version.version),
            run_id=version.run_id,
            feature_contract_version=self.use_case.contract_version,
            loaded_at=datetime.now(UTC),
            load_seconds=round(time.perf_counter() - started, 4),
            pipeline=pipeline,
            positive_index=positive_index,
            scorer=scorer,
            alias_set_at=_alias_set_at(version.tags or {}),
            decision_threshold=_decision_threshold(version.tags or {}),
        )

    def _settle_memory(self) -> None:
        """Keep the cyclic collector away from the model (see the module docstring)."""
        if not self.gc_freeze:
            return
        if not self._collected_once:
            gc.collect()
            self._collected_once = True
        gc.freeze()

    def force_reload(self, name: str, alias: str) -> LoadedModel:
        """Load `name@alias` now even if the version did not change."""
        return self.load(name, alias)

    def reload_if_changed(self, name: str, alias: str) -> LoadedModel | None:
        """Load `name@alias` if it now points at another version; None if unchanged."""
        current = self._current
        if current is not None:
            try:
                version = self._client().get_model_version_by_alias(name, alias)
            except MlflowException as error:
                self._last_error = f"alias check failed, still serving: {_first_line(error)}"
                if error.error_code in _NOT_FOUND_CODES:
                    raise ModelNotFoundError(self._last_error) from error
                raise RegistryUnavailableError(self._last_error) from error
            if str(version.version) == current.version:
                return None
        return self.load(name, alias)


async def keep_model_loaded(
    holder: ModelHolder,
    name: str,
    alias: str,
    retry_seconds: float,
    reload_seconds: float,
    first_attempt_done: asyncio.Event,
) -> None:
    """Load in a worker thread until a model is in; then, if asked, follow the alias.

    Runs for the life of the app. Expected failures (no champion yet, registry
    down, incompatible model) are logged as one line and retried; anything else
    is logged with its traceback and retried too, so a transient surprise never
    leaves the server permanently unready.
    """
    while True:
        try:
            await anyio.to_thread.run_sync(holder.reload_if_changed, name, alias)
        except ModelLoadError as error:
            log.warning("%s (next try in %.1f s)", error, retry_seconds)
        except Exception as error:
            holder.record_error(f"unexpected error while loading: {_first_line(error)}")
            log.exception("loading %s@%s failed unexpectedly", name, alias)
        finally:
            first_attempt_done.set()
        if holder.current is None:
            await asyncio.sleep(retry_seconds)
        elif reload_seconds > 0:
            await asyncio.sleep(reload_seconds)
        else:
            return
