"""Train -> evaluate -> register -> gate -> rollback on a real (SQLite) MLflow store."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from contracts.reviews import FEATURE_CONTRACT_VERSION, feature_fingerprint
from features.reviews import FEATURE_COLUMNS, build_features
from synthetic.reviews import generate_reviews
from training import cli, mlflow_utils
from training.data import feature_frame, folder_sha256, load_features, split_frames
from training.evaluate import METRIC_NAMES, compute_metrics, evaluate_run
from training.models import build_baseline, resolve_params
from training.promote import register_and_gate
from training.train import train_model

pytestmark = pytest.mark.slow

MODEL = "training-tests-review-sentiment"


@pytest.fixture(scope="module")
def good_run(driftloop_home: Path, features_dir: Path) -> dict[str, Any]:
    return train_model(str(features_dir), experiment="training-tests", run_name="good")


@pytest.fixture(scope="module")
def shuffled_dir(
    review_table: pd.DataFrame,
    tmp_path_factory: pytest.TempPathFactory,
    write_folder: Callable[..., Path],
) -> Path:
    """Same rows, but train/valid labels permuted: a model that learns nothing."""
    table = review_table.copy()
    fit_rows = table["split"] != "test"
    rng = np.random.default_rng(0)
    table.loc[fit_rows, "label"] = rng.permutation(table.loc[fit_rows, "label"].to_numpy())
    return write_folder(table, tmp_path_factory.mktemp("shuffled") / "features")


@pytest.fixture(scope="module")
def sourced_dir(
    review_table: pd.DataFrame,
    tmp_path_factory: pytest.TempPathFactory,
    write_folder: Callable[..., Path],
) -> Path:
    """Same rows with a `source` column: the gate's segments (150 test rows each)."""
    table = review_table.copy()
    table["source"] = np.where(np.arange(len(table)) % 2 == 0, "imdb", "products")
    return write_folder(table, tmp_path_factory.mktemp("sourced") / "features")


def _version_tags(version: str) -> dict[str, str]:
    return mlflow_utils.client().get_model_version(MODEL, version).tags


def _aliases() -> dict[str, str]:
    aliases = mlflow_utils.client().get_registered_model(MODEL).aliases
    return {alias: str(version) for alias, version in aliases.items()}


def test_train_model_records_lineage_and_a_usable_model(
    good_run: dict[str, Any], features_dir: Path, driftloop_home: Path
) -> None:
    run = mlflow_utils.client().get_run(good_run["run_id"])
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert tags["feature_contract_version"] == FEATURE_CONTRACT_VERSION
    assert tags["feature_fingerprint"] == feature_fingerprint()
    assert tags["data_sha256"] == folder_sha256(features_dir)
    assert tags["version.scikit-learn"] and tags["version.mlflow"] == mlflow.__version__
    assert params["C"] == str(resolve_params()["C"]) and params["n_train"] == "900"
    assert metrics["valid_roc_auc"] == pytest.approx(good_run["valid_metrics"]["roc_auc"])
    assert good_run["valid_metrics"]["roc_auc"] > 0.85
    # artifacts under the home, not the working directory
    assert run.info.artifact_uri.startswith((driftloop_home / "mlflow" / "artifacts").as_uri())

    info = mlflow.models.get_model_info(good_run["model_uri"])
    assert info.signature.inputs.input_names() == list(FEATURE_COLUMNS)
    pyfunc = mlflow.pyfunc.load_model(good_run["model_uri"])
    served = pyfunc.predict(build_features(pd.DataFrame({"text": ["Loved it!!", "<b>dull</b>"]})))
    assert np.asarray(served).shape == (2, 2)


def test_evaluate_run_scores_the_test_split(good_run: dict[str, Any], features_dir: Path) -> None:
    result = evaluate_run(good_run["run_id"], str(features_dir))
    assert set(result) == set(METRIC_NAMES)
    assert result["roc_auc"] > 0.85
    run = mlflow_utils.client().get_run(good_run["run_id"])
    assert run.data.metrics["test_roc_auc"] == pytest.approx(result["roc_auc"])
    assert run.data.metrics["n_test"] == 300
    # Threshold metrics are those of the label the model serves: at its decision threshold.
    threshold = float(run.data.tags["decision_threshold"])
    _, _, test = split_frames(load_features(features_dir))
    proba = mlflow.sklearn.load_model(good_run["model_uri"]).predict_proba(feature_frame(test))
    expected = compute_metrics(test["label"], proba[:, 1], threshold)
    assert result["balanced_accuracy"] == pytest.approx(expected["balanced_accuracy"])
    files = {a.path for a in mlflow_utils.client().list_artifacts(run.info.run_id, "evaluation")}
    assert files == {"evaluation/test_metrics.json", "evaluation/test_plots.png"}


def test_gate_promotes_keeps_and_rolls_back(
    good_run: dict[str, Any],
    features_dir: Path,
    shuffled_dir: Path,
    sourced_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 1. first model: no champion yet
    first = register_and_gate(good_run["run_id"], MODEL, str(features_dir))
    assert first["promoted"] and first["champion_version"] == first["version"] == "1"
    assert _aliases() == {"champion": "1"}
    tags = _version_tags("1")
    assert tags["gate.promote"] == "true" and "no champion" in tags["gate.reason"]
    assert tags["feature_contract_version"] == FEATURE_CONTRACT_VERSION
    assert float(tags["test_roc_auc"]) > 0.85
    # The threshold chosen on valid travels from the run to the version and the logged model.
    threshold = float(tags["decision_threshold"])
    assert threshold == pytest.approx(good_run["decision_threshold"]) and 0 < threshold < 1
    info = mlflow.models.get_model_info(good_run["model_uri"])
    assert info.metadata["decision_threshold"] == pytest.approx(threshold)
    assert json.loads(tags["gate.report"])["thresholds"]["challenger"] == pytest.approx(threshold)

    # 2. a model trained on shuffled labels, gated on the same test rows: kept as challenger
    weak_run = train_model(str(shuffled_dir), experiment="training-tests", run_name="shuffled")
    second = register_and_gate(weak_run["run_id"], MODEL, str(features_dir))
    assert not second["promoted"] and second["champion_version"] == "1"
    assert _aliases() == {"champion": "1", "challenger": "2"}
    tags = _version_tags("2")
    assert tags["gate.promote"] == "false"
    assert (
        tags["gate.reason"].startswith("held back") and "roc_auc on overall" in tags["gate.reason"]
    )
    assert int(tags["gate.failed_checks"]) >= 1 and tags["gate.primary_metric"] == "roc_auc"
    report = json.loads(tags["gate.report"])
    checks = [dict(zip(report["columns"], row, strict=True)) for row in report["checks"]]
    assert {c["metric"] for c in checks} == {"roc_auc", "balanced_accuracy", "log_loss"}
    assert all(c["scope"] == "overall" for c in checks)
    assert report["thresholds"]["champion"] == pytest.approx(threshold)
    assert float(tags["gate.champion_value"]) == pytest.approx(
        float(_version_tags("1")["test_roc_auc"])
    )
    assert float(tags["gate.delta"]) < -0.2
    assert tags["gate.compared_with_version"] == "1"
    assert mlflow_utils.client().get_run(weak_run["run_id"]).data.tags["gate.promote"] == "false"

    # 3. the same good model again ties the champion: ties promote, challenger is cleared
    #    (on rows carrying a source: every metric is compared per source too)
    third = register_and_gate(good_run["run_id"], MODEL, str(sourced_dir))
    assert third["promoted"] and third["decision"]["delta"] == pytest.approx(0.0, abs=1e-12)
    assert _aliases() == {"champion": "3"}
    assert "2 segment(s) by 'source' judged" in third["decision"]["reason"]
    scopes = {(c["scope"], c["metric"]) for c in third["decision"]["checks"]}
    assert ("segment products", "balanced_accuracy") in scopes and len(scopes) == 9

    # 4. the champion loads from the registry and scores like an in-process fit
    texts = generate_reviews(20, seed=99)
    fresh = build_baseline(resolve_params())
    train, valid, _ = split_frames(load_features(features_dir))
    both = pd.concat([train, valid], ignore_index=True)
    fresh.fit(feature_frame(both), both["label"])
    champion = mlflow.sklearn.load_model(f"models:/{MODEL}@champion")
    np.testing.assert_allclose(
        champion.predict_proba(build_features(texts)),
        fresh.predict_proba(build_features(texts)),
        rtol=0,
        atol=1e-12,
    )

    # 5. rollback through the CLI, then inspect through the CLI
    assert (
        cli.main(["rollback", "1", "--model", MODEL, "--reason", "bad canary", "--by", "ops"]) == 0
    )
    assert "champion v3 -> v1 by ops (bad canary)" in capsys.readouterr().out
    assert _aliases() == {"champion": "1"}
    tags = _version_tags("1")
    assert (tags["rollback.by"], tags["rollback.reason"]) == ("ops", "bad canary")
    assert tags["rollback.from_version"] == "3"

    assert cli.main(["champion", "--model", MODEL]) == 0
    report = capsys.readouterr().out
    assert "champion version  1" in report and "bad canary" in report
    assert cli.main(["versions", "--model", MODEL]) == 0
    table = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in table[2:]] == ["3", "2", "1"]
    assert table[4].split()[1] == "champion" and "keep" in table[3]

    # 6. a champion from an older feature contract cannot be compared: it is replaced
    mlflow_utils.client().set_model_version_tag(
        MODEL, "1", "feature_contract_version", "reviews-v0"
    )
    fourth = register_and_gate(weak_run["run_id"], MODEL, str(features_dir))
    assert fourth["promoted"] and fourth["version"] == "4"
    assert "feature contract 'reviews-v0'" in fourth["decision"]["reason"]
    assert _aliases() == {"champion": "4"}

    # ... and rolling back to it is refused unless forced
    assert cli.main(["rollback", "1", "--model", MODEL]) == 1
    assert "reviews-v0" in capsys.readouterr().err
    assert _aliases() == {"champion": "4"}
