"""Feature definitions shared by training (Spark) and serving (FastAPI).

Pure pandas/numpy/stdlib: importing this package must never pull in Spark,
FastAPI, MLflow or Airflow.
"""

from features.reviews import FEATURE_COLUMNS, NUMERIC_FEATURES, TEXT_CLEAN, build_features

__all__ = ["FEATURE_COLUMNS", "NUMERIC_FEATURES", "TEXT_CLEAN", "build_features"]
