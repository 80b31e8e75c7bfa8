"""The use-case registry: lookup by name, the protocol, and extension from a folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from core import usecases
from core.usecases import (
    EXTRA_REGISTRIES_ENV,
    UseCaseError,
    get_use_case,
    load_registry,
    use_case_names,
)
from tests.tiny_usecase import write_tiny_use_case


@pytest.fixture
def tiny_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    registry = write_tiny_use_case(tmp_path / "tiny")
    monkeypatch.setenv(EXTRA_REGISTRIES_ENV, str(registry.parent))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    yield registry
    for name in ("tiny_features", "tiny_contract", "tiny_families"):
        sys.modules.pop(name, None)


def test_reviews_is_registered_and_the_default() -> None:
    assert use_case_names()[0] == "reviews"
    reviews = get_use_case()
    assert reviews.name == "reviews"
    assert reviews.kind == "text"
    assert reviews.features.__name__ == "features.reviews"
    assert reviews.contract.__name__ == "contracts.reviews"


def test_every_registered_use_case_satisfies_the_protocol() -> None:
    for name in use_case_names():
        use_case = get_use_case(name)
        use_case.check()
        contract = use_case.contract
        assert contract.feature_fingerprint() == contract.FEATURE_FINGERPRINT, name
        for key in ("search_spaces", "search", "gate", "drift"):
            assert use_case.config_path(key).is_file(), (name, key)


def test_reviews_adaptation_kept_the_fingerprint() -> None:
    # The registry protocol added names, never values: the published fingerprint still holds.
    contract = get_use_case("reviews").contract
    assert contract.FEATURE_FINGERPRINT == "24081e15e33e399f"
    assert contract.feature_fingerprint() == "24081e15e33e399f"


def test_unknown_use_case_names_the_known_ones() -> None:
    with pytest.raises(UseCaseError, match=r"unknown use case 'nope'.*reviews"):
        get_use_case("nope")


def test_model_name_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRIFTLOOP_MODEL_NAME", raising=False)
    monkeypatch.delenv("DRIFTLOOP_MODEL_NAME_REVIEWS", raising=False)
    assert get_use_case("reviews").model_name == "review-sentiment"
    monkeypatch.setenv("DRIFTLOOP_MODEL_NAME", "legacy-name")
    assert get_use_case("reviews").model_name == "legacy-name"
    monkeypatch.setenv("DRIFTLOOP_MODEL_NAME_REVIEWS", "specific-name")
    assert get_use_case("reviews").model_name == "specific-name"


def test_a_third_use_case_is_added_from_a_folder(tiny_registry: Path) -> None:
    assert "tiny" in use_case_names()
    tiny = get_use_case("tiny")
    tiny.check()
    assert tiny.kind == "tabular"
    assert tiny.model_name == "tiny-model"
    assert str(tiny_registry.parent) in os.environ["PYTHONPATH"].split(os.pathsep)
    # No gate.yaml etc. in its config folder: the platform defaults apply.
    assert tiny.config_path("gate") == usecases.DEFAULT_CONFIG["gate"]
    assert tiny.config_path("search_spaces").parent == tiny_registry.parent / "tiny_config"
    import pandas as pd

    frame = tiny.features.build_features(pd.DataFrame({"amount": [1.0], "channel": ["web"]}))
    assert list(frame.columns) == list(tiny.features.FEATURE_COLUMNS)


def test_config_dir_files_win_over_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = write_tiny_use_case(tmp_path / "tiny", extra_config={"gate.yaml": "x: 1\n"})
    monkeypatch.setenv(EXTRA_REGISTRIES_ENV, str(registry))
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert get_use_case("tiny").config_path("gate") == registry.parent / "tiny_config" / "gate.yaml"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("kind: image\n    features: a\n    contract: b\n    model_name: m", "kind is 'image'"),
        ("kind: text\n    contract: b\n    model_name: m", r"lacks \['features'\]"),
        (
            "kind: text\n    features: a\n    contract: b\n    model_name: m\n    colour: red",
            "unknown",
        ),
    ],
)
def test_bad_registry_entries_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str, message: str
) -> None:
    path = tmp_path / "usecases.yaml"
    path.write_text(f"use_cases:\n  broken:\n    {entry}\n")
    monkeypatch.setenv(EXTRA_REGISTRIES_ENV, str(path))
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(UseCaseError, match=message):
        load_registry()


def test_a_module_breaking_the_protocol_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "half_features.py").write_text("FEATURE_COLUMNS = ('a',)\n")
    path = tmp_path / "usecases.yaml"
    path.write_text(
        "use_cases:\n  half:\n    kind: tabular\n    features: half_features\n"
        "    contract: contracts.reviews\n    model_name: m\n"
    )
    monkeypatch.setenv(EXTRA_REGISTRIES_ENV, str(tmp_path))
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(UseCaseError, match=r"half_features lacks \['RAW_COLUMNS'"):
        get_use_case("half").check()
    sys.modules.pop("half_features", None)


def test_missing_extra_registry_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(EXTRA_REGISTRIES_ENV, str(tmp_path / "absent"))
    with pytest.raises(UseCaseError, match="no registry file"):
        use_case_names()
