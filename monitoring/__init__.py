"""Watching what serving saw: drift against a reference profile, and realised performance.

How the daily drift_check DAG uses it::

    from monitoring.config import load_thresholds
    from monitoring.drift import check_drift
    from monitoring.performance import realised_performance
    from monitoring.reference import load_profile

    thresholds = load_thresholds(overrides=params)          # YAML + DAG Params
    result = check_drift(load_profile(path), todays_log, thresholds, out_dir)
    if result.decision == "drift":
        ...  # trigger training with conf={"reason": result.reasons, "report": result.report_html}
    perf = realised_performance(log["label"], log["score"], champion_test_metrics, thresholds)

At registration, `monitoring.reference.build_reference_profile` +
`save_profile` store the champion's profile (Parquet) next to the model.

Importing this package is cheap: Evidently is imported only inside the function
that runs the report, so a process that only builds reference profiles or
computes PSI never pays for it (~12 s).
"""
