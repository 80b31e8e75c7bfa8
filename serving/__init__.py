"""Online prediction server: FastAPI app scoring reviews with the registered champion.

Imports only FastAPI, pandas/scikit-learn, mlflow-skinny and the shared
`features`/`contracts` packages, never Airflow, Spark, Evidently or Great
Expectations, so the serving image stays small and starts fast.
"""
