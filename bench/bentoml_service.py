"""The serving benchmark's BentoML peer: the same registered model behind BentoML's batching.

`bench.serving_bench` starts it as

    bentoml serve bench.bentoml_service:ReviewScorer --host 127.0.0.1 --port PORT

with MLFLOW_TRACKING_URI, BENCH_MODEL_URI (`models:/<name>/<version>`) and BENCH_WORKERS
set. Each worker loads the model from the registry like the other servers, computes the
features of the raw review texts with the project's `build_features` and scores them with
the pipeline's own `predict_proba` (what a BentoML user writes). `POST /predict` takes
`{"texts": ["review", ...]}` and answers the P(positive) of each; BentoML's adaptive batching
merges concurrent requests into one call (up to 64 reviews, as this API's micro-batcher).
A benchmark dependency only: nothing in serving/ imports BentoML.
"""

from __future__ import annotations

import os

import bentoml
import numpy as np
import pandas as pd

from contracts.reviews import RAW_TEXT
from features.reviews import build_features

WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))


@bentoml.service(workers=WORKERS, traffic={"timeout": 60})
class ReviewScorer:
    def __init__(self) -> None:
        import mlflow.sklearn

        self.pipeline = mlflow.sklearn.load_model(os.environ["BENCH_MODEL_URI"])
        self.positive = [int(c) for c in self.pipeline.classes_].index(1)

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=1000)
    def predict(self, texts: list[str]) -> list[float]:
        frame = build_features(pd.DataFrame({RAW_TEXT: texts}))
        proba = np.asarray(self.pipeline.predict_proba(frame))[:, self.positive]
        return [float(p) for p in proba]
