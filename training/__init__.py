"""Training stage of driftloop: data, model, MLflow runs, evaluation and the promotion gate.

One module per stage (`data`, `models`, `train`, `evaluate`, `promote`), with
`mlflow_utils` as the only adapter to the tracking server and registry, and
`cli` as the command line (`python -m training ...`).
"""
