from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from monitoring.config import (
    CHECK_NAMES,
    DEFAULT_THRESHOLDS_PATH,
    load_lexicon,
    load_thresholds,
)


def test_shipped_yaml_loads_every_field() -> None:
    thresholds = load_thresholds()
    raw = yaml.safe_load(DEFAULT_THRESHOLDS_PATH.read_text())
    assert thresholds.to_dict() == {**raw, "checks": tuple(raw["checks"])}
    assert set(thresholds.check_weights) == set(CHECK_NAMES)


def test_overrides_from_dag_params_are_coerced() -> None:
    thresholds = load_thresholds(
        {"psi_threshold": "0.3", "min_rows": 120.0, "check_weights": {"text_domain": "1"}}
    )
    assert thresholds.psi_threshold == 0.3
    assert thresholds.min_rows == 120
    assert isinstance(thresholds.min_rows, int)
    # A mapping override changes one key and keeps the others.
    assert thresholds.check_weights["text_domain"] == 1.0
    assert (
        thresholds.check_weights["feature_drift"]
        == load_thresholds().check_weights["feature_drift"]
    )


def test_unknown_key_names_the_key() -> None:
    with pytest.raises(ValueError, match="psi_treshold"):
        load_thresholds({"psi_treshold": 0.3})


def test_bad_values_are_rejected_with_the_field_name() -> None:
    with pytest.raises(ValueError, match="min_rows"):
        load_thresholds({"min_rows": "many"})
    with pytest.raises(ValueError, match="min_rows"):
        load_thresholds({"min_rows": 12.5})
    with pytest.raises(ValueError, match="drifted_share"):
        load_thresholds({"drifted_share": 1.5})
    with pytest.raises(ValueError, match="min_votes"):
        load_thresholds({"min_votes": 100})


def test_yaml_missing_a_field_fails(tmp_path: Path) -> None:
    raw = yaml.safe_load(DEFAULT_THRESHOLDS_PATH.read_text())
    del raw["psi_threshold"]
    path = tmp_path / "drift.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="psi_threshold"):
        load_thresholds(path=path)
    with pytest.raises(FileNotFoundError):
        load_thresholds(path=tmp_path / "absent.yaml")


def test_lexicon_has_disjoint_word_lists() -> None:
    lexicon = load_lexicon()
    assert lexicon["positive"] and lexicon["negative"]
    assert not lexicon["positive"] & lexicon["negative"]


RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


def test_calibrated_block_is_what_the_committed_evidence_chose() -> None:
    """drift.yaml's combined decision cites bench/results/drift_calibration.json: it must match."""
    import json

    import numpy as np

    evidence = json.loads((RESULTS / "drift_calibration.json").read_text())
    thresholds = load_thresholds()
    chosen = evidence["chosen"]
    assert thresholds.decision_method == chosen["decision_method"]
    assert thresholds.combined_threshold == chosen["combined_threshold"]
    assert thresholds.z_cap == chosen["z_cap"]
    assert thresholds.combined_null_sd == pytest.approx(chosen["combined_null_sd"])
    assert thresholds.check_null_mean == pytest.approx(evidence["null_mean"])
    assert thresholds.check_null_sd == pytest.approx(evidence["null_sd"])
    # The nulls are the in-domain calibration days' statistics, nothing else.
    in_domain = [d for d in evidence["per_day"] if d["kind"] == "in_domain"]
    assert len(in_domain) == evidence["days"]["in_domain"] >= 10
    for check in CHECK_NAMES:
        values = [d["statistics"][check] for d in in_domain]
        assert thresholds.check_null_mean[check] == pytest.approx(np.mean(values), abs=1e-4)


def test_held_out_rates_come_from_other_days_with_the_shipped_thresholds() -> None:
    import json

    evidence = json.loads((RESULTS / "drift_calibration.json").read_text())
    report = json.loads((RESULTS / "drift.json").read_text())
    held = report["held_out"]
    assert set(held) >= {
        "detection_rate",
        "false_alarm_rate",
        "mixed_detection_rate",
        "calibration_seed",
        "held_out_seed",
        "days",
    }
    assert set(held["mixed_detection_rate"]) == {"0.2", "0.35", "0.5"}
    assert held["calibration_seed"] == evidence["calibration_seed"] != held["held_out_seed"]
    # `checks` (which checks run) was added after the benchmark ran; reviews runs all five,
    # which is what the benchmark ran.
    shipped = load_thresholds().to_dict()
    assert shipped.pop("checks") == CHECK_NAMES
    assert {k: v for k, v in report["thresholds"].items() if k != "checks"} == shipped
    in_domain = [d for d in report["per_day"] if d["kind"] == "in_domain"]
    assert held["false_alarm_rate"] == pytest.approx(
        sum(d["decision"] == "drift" for d in in_domain) / len(in_domain)
    )
