"""Training-serving skew: the same raw rows through both paths must agree.

Path (a) is the Spark job (`mapInPandas` over `features.build_features`),
path (b) is the FastAPI app's request path (`POST /predict`). Feature values
must be identical (exact for strings and integers, 1e-12 for floats) and so
must the champion's probabilities. A failure names the row and the column.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from contracts.reviews import MAX_TEXT_CHARS
from features.reviews import FEATURE_COLUMNS, NUMERIC_FEATURES
from synthetic import generate_reviews
from tests.helpers import datasets_dir

pytestmark = [pytest.mark.spark, pytest.mark.slow]

FLOAT_TOL = 1e-12
MODEL_NAME = "skew-test-model"


def _real_rows(n_per_source: int = 150) -> pd.DataFrame:
    """Real reviews from each dataset that is present (none → empty frame)."""
    specs = [
        ("imdb_50k.csv.gz", "review", {}),
        ("kindle_reviews_5core_sample_4905.csv.gz", "reviewText", {}),
        ("amazon_product_reviews_datafiniti_34660.csv.gz", "reviews.text", {"low_memory": False}),
    ]
    frames = []
    for name, column, kwargs in specs:
        path = datasets_dir() / name
        if not path.exists():
            continue
        texts = pd.read_csv(path, usecols=[column], nrows=2000, keep_default_na=False, **kwargs)[
            column
        ]
        frames.append(texts.sample(n=min(n_per_source, len(texts)), random_state=7))
    if not frames:
        return pd.DataFrame({"text": []})
    return pd.DataFrame({"text": pd.concat(frames, ignore_index=True)})


def _hypothesis_texts(n: int = 200) -> list[str]:
    """Arbitrary Unicode strings drawn by Hypothesis (seeded, so reproducible)."""
    drawn: list[str] = []

    @seed(20261123)
    @settings(max_examples=1, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.text(min_size=1, max_size=400), min_size=n, max_size=n))
    def draw(texts: list[str]) -> None:
        drawn[:] = texts

    draw()
    return drawn


@pytest.fixture(scope="module")
def raw_rows() -> pd.DataFrame:
    hostile = [
        "I LOVED it!!! <br /><br />Best film, don\x92t miss &amp; see",
        "Emoji 😀👍🏽 and ZWJ 👩‍👩‍👧 sequences",
        "ctrl \x00\x07\x1b chars \x7f and \u200b\u2028\u2029 separators",
        "Tabs\tand\r\nnewlines\n\n",
        "RTL \u202eesrever\u202c and combining e\u0301",
        "long " * 3000,
    ]
    texts = pd.concat(
        [
            _real_rows()["text"],
            generate_reviews(150, seed=3)["text"],
            generate_reviews(50, seed=4, domain="products")["text"],
            pd.Series(hostile),
            pd.Series(_hypothesis_texts()),
        ],
        ignore_index=True,
    )
    # Both paths refuse blank or over-long text (quarantine / 422): compare the rest.
    texts = texts[texts.map(lambda t: bool(t.strip()) and len(t) <= MAX_TEXT_CHARS)]
    texts = texts.drop_duplicates().reset_index(drop=True)
    labels = np.random.default_rng(0).integers(0, 2, len(texts))
    return pd.DataFrame({"text": texts.astype(object), "label": labels.astype("int64")})


@pytest.fixture(scope="module")
def spark_path(raw_rows: pd.DataFrame, spark, tmp_path_factory) -> pd.DataFrame:
    from jobs.spark.featurize import featurize, read_features

    work = tmp_path_factory.mktemp("skew")
    raw_path = work / "raw.parquet"
    raw_rows.to_parquet(raw_path, index=False)
    stats = featurize(spark, str(raw_path), str(work / "out"))
    assert stats["rows_read"] == len(raw_rows)
    features = read_features(str(work / "out"))
    assert len(features) == len(raw_rows), stats
    return features.set_index("text", drop=False)


@pytest.fixture(scope="module")
def champion(spark_path: pd.DataFrame, driftloop_home: Path, tmp_path_factory) -> str:
    """A real model trained and registered from the Spark output."""
    from training.promote import register_and_gate
    from training.train import train_model

    features_dir = tmp_path_factory.mktemp("skew-train") / "features"
    train = generate_reviews(1200, seed=11)
    from features.reviews import build_features

    frame = pd.concat([train, build_features(train)], axis=1)
    frame["review_id"] = [f"r{i}" for i in range(len(frame))]
    frame["split"] = np.where(np.arange(len(frame)) % 10 < 8, "train", "test")
    frame.loc[frame.index % 10 == 8, "split"] = "valid"
    features_dir.mkdir(parents=True)
    frame.to_parquet(features_dir / "part-0.parquet", index=False)
    trained = train_model(str(features_dir), experiment="skew-tests")
    register_and_gate(trained["run_id"], MODEL_NAME, str(features_dir))
    return MODEL_NAME


@pytest.fixture(scope="module")
def api_path(raw_rows: pd.DataFrame, champion: str) -> pd.DataFrame:
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.config import ServingSettings

    app = create_app(ServingSettings(model_name=champion))
    rows = []
    with TestClient(app) as client:
        assert client.get("/ready").status_code == 200
        for text in raw_rows["text"]:
            response = client.post("/predict?return_features=true", json={"text": text})
            assert response.status_code == 200, (text[:80], response.text)
            body = response.json()
            rows.append({"text": text, "probability": body["probability"], **body["features"]})
    return pd.DataFrame(rows).set_index("text", drop=False)


def _differences(spark_df: pd.DataFrame, api_df: pd.DataFrame) -> list[str]:
    problems = []
    for text in api_df.index:
        s_row, a_row = spark_df.loc[text], api_df.loc[text]
        for column in FEATURE_COLUMNS:
            s_val, a_val = s_row[column], a_row[column]
            if column in NUMERIC_FEATURES and isinstance(s_val, float | np.floating):
                same = math.isclose(float(s_val), float(a_val), rel_tol=0, abs_tol=FLOAT_TOL)
            else:
                same = type(a_val)(s_val) == a_val and str(s_val) == str(a_val)
            if not same:
                problems.append(
                    f"row review_id={s_row['review_id']} text={text[:60]!r}: column {column}: "
                    f"spark={s_val!r} api={a_val!r}"
                )
    return problems


def test_feature_frames_identical(spark_path: pd.DataFrame, api_path: pd.DataFrame) -> None:
    # ~200 synthetic + hostile + Hypothesis rows, plus up to 450 real reviews where present
    assert len(api_path) == len(spark_path) > 190
    problems = _differences(spark_path, api_path)
    assert not problems, f"{len(problems)} differences, first ones:\n" + "\n".join(problems[:20])


def test_probabilities_identical(
    spark_path: pd.DataFrame, api_path: pd.DataFrame, champion: str
) -> None:
    import mlflow

    model = mlflow.sklearn.load_model(f"models:/{champion}@champion")
    offline = model.predict_proba(spark_path.loc[api_path.index, list(FEATURE_COLUMNS)])[:, 1]
    online = api_path["probability"].to_numpy()
    worst = int(np.argmax(np.abs(offline - online)))
    assert np.allclose(offline, online, rtol=0, atol=FLOAT_TOL), (
        f"row text={api_path.index[worst][:60]!r}: spark-path probability {offline[worst]!r} "
        f"vs api {online[worst]!r}"
    )


def test_skew_check_can_fail(spark_path: pd.DataFrame, api_path: pd.DataFrame) -> None:
    """The comparison itself notices a one-character change in one cell."""
    tampered = api_path.copy()
    first = tampered.index[0]
    tampered.loc[first, "text_clean"] = tampered.loc[first, "text_clean"] + "x"
    tampered.loc[first, "n_words"] = int(tampered.loc[first, "n_words"]) + 1
    problems = _differences(spark_path, tampered)
    assert len(problems) == 2 and "column text_clean" in problems[0]
