"""The feature-contract version must move whenever the features change."""

from __future__ import annotations

import pandas as pd

from contracts import reviews as contract
from features.reviews import FEATURE_COLUMNS, build_features


def test_feature_fingerprint_matches_the_recorded_version() -> None:
    actual = contract.feature_fingerprint()
    assert actual == contract.FEATURE_FINGERPRINT, (
        f"features.build_features changed its output (fingerprint {actual}, recorded "
        f"{contract.FEATURE_FINGERPRINT}). Bump FEATURE_CONTRACT_VERSION in contracts/reviews.py "
        "and add the new version to contracts/fingerprints.yaml: models trained on the old "
        "features must not be served with the new ones."
    )


def test_fingerprint_sees_a_changed_feature(monkeypatch) -> None:
    import features.reviews as module

    original = module.clean_text
    monkeypatch.setattr(module, "clean_text", lambda value: original(value).upper())
    assert contract.feature_fingerprint() != contract.FEATURE_FINGERPRINT


def test_feature_schema_accepts_build_features_output() -> None:
    frame = build_features(pd.DataFrame({"text": ["Fine.", None, "<br />WOW!!"]}))
    contract.feature_schema.validate(frame)
    assert set(contract.feature_schema.columns) == set(FEATURE_COLUMNS)


def test_label_maps_are_data() -> None:
    sources = contract.load_sources()
    assert contract.map_label("positive", sources["imdb"]["label_map"]) == 1
    assert contract.map_label(5.0, sources["amazon"]["label_map"]) == 1
    assert contract.map_label("3", sources["kindle"]["label_map"]) is None
    assert contract.map_label(None, sources["kindle"]["label_map"]) is None
