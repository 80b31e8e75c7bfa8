"""What the DAG tasks do, kept out of the DAG files so those parse fast.

Each function takes and returns small JSON-able dicts (paths, ids, counts),
never DataFrames: Airflow passes them between tasks as XComs.
"""
