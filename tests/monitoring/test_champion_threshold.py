"""The daily check judges served labels at the champion's own decision threshold."""

from __future__ import annotations

import numpy as np

from monitoring.config import load_thresholds
from monitoring.performance import realised_performance
from pipelines.drift import _served_threshold, _with_champion_threshold


def test_the_champions_tag_sets_the_threshold_unless_a_param_overrides_it() -> None:
    reference = {"decision_threshold": _served_threshold({"decision_threshold": "0.83"})}
    assert load_thresholds(_with_champion_threshold({}, reference)).decision_threshold == 0.83
    explicit = _with_champion_threshold({"decision_threshold": 0.6, "min_rows": 5}, reference)
    assert load_thresholds(explicit).decision_threshold == 0.6
    untagged = {"decision_threshold": _served_threshold({})}
    assert load_thresholds(_with_champion_threshold(None, untagged)).decision_threshold == 0.5
    assert _served_threshold({"decision_threshold": "1.5"}) is None


def test_realised_accuracy_uses_that_threshold() -> None:
    # 90 % positive traffic scored high: at 0.5 every row is called positive.
    labels = np.array([1] * 9 + [0])
    scores = np.array([0.9, 0.95, 0.9, 0.92, 0.97, 0.91, 0.93, 0.96, 0.94, 0.7])
    at_half = realised_performance(labels, scores, {}, load_thresholds(None))
    reference = {"decision_threshold": 0.8}
    at_champion = realised_performance(
        labels, scores, {}, load_thresholds(_with_champion_threshold(None, reference))
    )
    assert at_half["accuracy"] == 0.9
    assert at_champion["accuracy"] == 1.0
