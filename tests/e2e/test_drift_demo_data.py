"""`make demo-drift` prepares honest data: what it trains on never comes back as traffic.

The scenario itself needs the whole stack and a few minutes of training; these
tests pin the part that decides whether its figures mean anything: which rows
land for training and which arrive as traffic.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from tests.helpers import datasets_dir, real_dataset

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "local" / "drift_demo.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("drift_demo_under_test", DEMO)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


demo = _load()


def _products() -> list[dict]:
    from contracts.reviews import load_sources

    return [load_sources()[name] for name in ("amazon", "kindle")]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory):
    for name in (demo.IMDB_FILE, demo.IMDB_INDEX, *(s["file"] for s in _products())):
        real_dataset(name)
    out = tmp_path_factory.mktemp("drift-demo")
    sizes = {"imdb_rows": 400, "amazon_rows": 300, "kindle_rows": 200, "traffic": 120}
    return out, sizes, demo.prepare_scenario(datasets_dir(), out, seed=3, **sizes)


@pytest.mark.realdata
def test_landed_files_keep_the_source_columns_and_sizes(prepared) -> None:
    _, sizes, scenario = prepared
    imdb = pd.read_csv(scenario.imdb_train, keep_default_na=False)
    amazon = pd.read_csv(scenario.amazon_landed, low_memory=False)
    kindle = pd.read_csv(scenario.kindle_landed)
    assert list(imdb.columns) == ["review", "sentiment"] and len(imdb) == sizes["imdb_rows"]
    assert {"reviews.text", "reviews.rating"} <= set(amazon.columns)
    assert len(amazon) == sizes["amazon_rows"]
    assert {"reviewText", "overall"} <= set(kindle.columns) and len(kindle) == sizes["kindle_rows"]


@pytest.mark.realdata
def test_imdb_training_rows_come_from_the_train_split_and_traffic_from_test(prepared) -> None:
    _, _, scenario = prepared
    full = pd.read_csv(real_dataset(demo.IMDB_FILE), keep_default_na=False)
    index = pd.read_csv(real_dataset(demo.IMDB_INDEX)).sort_values("row")
    split = dict(zip(full["review"], index["aclimdb_split"], strict=True))
    landed = pd.read_csv(scenario.imdb_train, keep_default_na=False)
    assert {split[t] for t in landed["review"]} == {"train"}
    assert {split[t] for t in scenario.day1["text"]} == {"test"}
    assert not set(scenario.day1["text"]) & set(landed["review"])
    assert set(scenario.day1["label"]) == {0, 1}


@pytest.mark.realdata
def test_product_traffic_is_labelled_and_never_among_the_landed_rows(prepared) -> None:
    _, sizes, scenario = prepared
    amazon = pd.read_csv(scenario.amazon_landed, low_memory=False)
    kindle = pd.read_csv(scenario.kindle_landed)
    landed = set(amazon["reviews.text"].dropna()) | set(kindle["reviewText"].dropna())
    day2 = scenario.day2
    assert len(day2) == sizes["traffic"]
    assert day2["origin"].value_counts().to_dict() == {"amazon": 60, "kindle": 60}
    assert not set(day2["text"]) & landed
    assert set(day2["label"]) <= {0, 1} and day2["text"].str.strip().ne("").all()


@pytest.mark.realdata
def test_the_same_seed_draws_the_same_scenario(prepared, tmp_path: Path) -> None:
    _, sizes, first = prepared
    again = demo.prepare_scenario(datasets_dir(), tmp_path, seed=3, **sizes)
    pd.testing.assert_frame_equal(first.day1, again.day1)
    pd.testing.assert_frame_equal(first.day2, again.day2)
    assert first.imdb_train.read_bytes() == again.imdb_train.read_bytes()


def test_the_terminal_summary_renders_every_outcome(capsys: pytest.CaptureFixture[str]) -> None:
    quality = {"accuracy": 0.9, "balanced_accuracy": None, "roc_auc": None, "positive_share": 1.0}
    day = {
        "traffic": "in-domain IMDB traffic",
        "decision": "no_drift",
        "triggered": False,
        "served": {"quality": quality},
        "reasons": [],
        "report_html": "/tmp/r.html",
    }
    summary = {
        "wall_seconds": 12.0,
        "start_champion": {"version": "1"},
        "days": [day, {**day, "decision": "drift", "triggered": True, "reasons": ["x"]}],
        "retrain": {
            "version": "2",
            "promoted": False,
            "gate": {"gate.reason": "not better"},
            "reload_seconds": None,
            "background_ok": 10,
            "background_failed": 0,
        },
        "day3": {"quality": quality, "versions": ["1"]},
    }
    demo.print_summary(summary)
    out = capsys.readouterr().out
    assert "champion: v1 (IMDB only) -> v1 (gate promote=False: not better)" in out
    assert "10 requests answered during retrain + swap, 0 failed" in out


def test_reload_delay_is_measured_between_promotion_and_load() -> None:
    assert demo.seconds_between("2026-11-23T13:55:57+00:00", "2026-11-23T13:56:00.887681Z") == (
        pytest.approx(3.887681)
    )
    assert demo.seconds_between(None, "2026-11-23T13:56:00Z") is None
