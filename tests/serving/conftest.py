"""A tiny real model in the session's MLflow store, and helpers to register it.

The pipeline is trained once per session on synthetic reviews, exactly the
way training shapes it (features from `build_features`, TF-IDF on the clean
text, scaled numeric signals, logistic regression), logged once with
cloudpickle, and registered as many times as tests need under fresh model
names, so tests never share an alias.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.sklearn
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from contracts.reviews import FEATURE_CONTRACT_VERSION, RAW_LABEL, RAW_TEXT
from features.reviews import NUMERIC_FEATURES, TEXT_CLEAN, build_features
from serving.app import create_app
from serving.config import ServingSettings
from serving.model import CONTRACT_TAG
from synthetic.reviews import generate_reviews

EXPERIMENT = "serving-tests"


@dataclass(frozen=True)
class LoggedModel:
    model_uri: str
    run_id: str
    tracking_uri: str


@pytest.fixture(scope="session")
def tiny_pipeline() -> Pipeline:
    """A real, small sentiment pipeline over the shared feature frame (~1 s to fit)."""
    data = generate_reviews(n=600, seed=11)
    features = build_features(data, text_col=RAW_TEXT)
    pipeline = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        ("tfidf", TfidfVectorizer(ngram_range=(1, 2), min_df=2), TEXT_CLEAN),
                        ("numeric", StandardScaler(), list(NUMERIC_FEATURES)),
                    ]
                ),
            ),
            ("classifier", LogisticRegression(C=2.0, max_iter=500)),
        ]
    )
    return pipeline.fit(features, data[RAW_LABEL])


@pytest.fixture(scope="session")
def tracking_uri(driftloop_home: Path) -> str:
    uri = f"sqlite:///{driftloop_home / 'mlflow' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


@pytest.fixture(scope="session")
def logged_model(tiny_pipeline: Pipeline, tracking_uri: str, driftloop_home: Path) -> LoggedModel:
    """The pipeline logged once, as training logs it (cloudpickle)."""
    client = MlflowClient(tracking_uri=tracking_uri)
    if client.get_experiment_by_name(EXPERIMENT) is None:
        artifacts = driftloop_home / "mlflow" / "artifacts" / EXPERIMENT
        client.create_experiment(EXPERIMENT, artifact_location=artifacts.as_uri())
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name="tiny-serving-model") as run:
        info = mlflow.sklearn.log_model(
            tiny_pipeline,
            name="model",
            serialization_format="cloudpickle",
            pip_requirements=["scikit-learn", "pandas"],
        )
    return LoggedModel(model_uri=info.model_uri, run_id=run.info.run_id, tracking_uri=tracking_uri)


RegisterFn = Callable[..., str]


@pytest.fixture(scope="session")
def register(logged_model: LoggedModel) -> RegisterFn:
    """register(name, contract=..., alias="champion") -> version: one more registry version."""
    client = MlflowClient(
        tracking_uri=logged_model.tracking_uri, registry_uri=logged_model.tracking_uri
    )

    def _register(
        name: str, contract: str | None = FEATURE_CONTRACT_VERSION, alias: str = "champion"
    ) -> str:
        version = mlflow.register_model(logged_model.model_uri, name)
        if contract is not None:
            client.set_model_version_tag(name, version.version, CONTRACT_TAG, contract)
        client.set_registered_model_alias(name, alias, version.version)
        return str(version.version)

    return _register


@pytest.fixture
def model_name() -> str:
    """A registered-model name no other test uses."""
    return f"serving-test-{uuid.uuid4().hex[:10]}"


SettingsFn = Callable[..., ServingSettings]


@pytest.fixture(scope="session")
def settings_for(tracking_uri: str) -> SettingsFn:
    """settings_for(name, **overrides): a test app's settings, quick retries, session store."""

    def _settings(name: str, **overrides: object) -> ServingSettings:
        values: dict[str, object] = {
            "model_name": name,
            "mlflow_tracking_uri": tracking_uri,
            "load_retry_seconds": 0.1,
            "startup_wait_seconds": 60.0,
            # gc.freeze() would pin this pytest process's objects; tested on its own.
            "gc_freeze": False,
        }
        values.update(overrides)
        return ServingSettings(**values)

    return _settings


@pytest.fixture(scope="session")
def champion_name(register: RegisterFn) -> str:
    """A model name whose champion is the tiny pipeline with the right contract."""
    name = f"serving-champion-{uuid.uuid4().hex[:8]}"
    register(name)
    return name


@pytest.fixture(scope="session")
def served(champion_name: str, settings_for: SettingsFn) -> Iterator[TestClient]:
    """One app serving the champion for the read-only tests."""
    app = create_app(settings_for(champion_name))
    with TestClient(app) as client:
        yield client
