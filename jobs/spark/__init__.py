"""Spark entry points: read a raw source, compute `features.*` with `mapInPandas`, write Parquet.

`featurize` is both a `spark-submit` script and an in-process function, so Airflow tasks,
tests and a cluster run the same code.
"""
