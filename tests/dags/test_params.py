"""pipelines.params: a run's Params are normalised, or rejected naming the Param and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.params import (
    INFER,
    ParamError,
    check_drift_params,
    check_training_params,
    describe_sources,
    family_names,
    infer_source,
    source_names,
)


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "reviews.csv"
    path.write_text("text,label\ngood,1\n")
    return path


def _rejects(check, params: dict, name: str, *phrases: str) -> ParamError:
    with pytest.raises(ParamError) as caught:
        check(params)
    assert caught.value.name == name, str(caught.value)
    message = str(caught.value)
    assert message.startswith(f"Param {name!r}: ")
    assert "\n" not in message
    for phrase in phrases:
        assert phrase in message, message
    return caught.value


def test_training_defaults_need_nothing() -> None:
    params = check_training_params({})
    assert params["data_path"] is None
    assert params["source"] == "synthetic" and params["source_inferred"]
    assert params["extra_sources"] == []
    assert params["families"] == family_names()
    assert params["n_trials"] == 8 and params["synthetic_rows"] == 3000
    assert params["model_name"] == "review-sentiment"
    assert params["reason"] == "manual" and params["trigger"] == {}
    assert params["use_case"] == "reviews"
    assert describe_sources(params) == "3000 generated synthetic rows of use case 'reviews'"


def test_empty_strings_count_as_empty() -> None:
    params = check_training_params({"data_path": "", "model_name": " ", "reason": ""})
    assert params["data_path"] is None
    assert params["model_name"] == "review-sentiment"
    assert params["reason"] == "manual"


def test_the_form_lists_what_the_config_defines() -> None:
    assert {"imdb", "kindle", "amazon", "synthetic"} <= set(source_names())
    assert {"logreg", "nbsvm"} <= set(family_names())


def test_source_is_inferred_from_a_known_file_name(tmp_path: Path) -> None:
    imdb = tmp_path / "imdb_50k.csv.gz"
    imdb.write_bytes(b"")
    params = check_training_params({"data_path": str(imdb), "source": INFER})
    assert params["source"] == "imdb" and params["source_inferred"]
    assert "inferred from the file name" in describe_sources(params)
    assert infer_source("/x/other.csv") == "synthetic"


def test_an_explicit_source_is_kept(data_file: Path) -> None:
    params = check_training_params({"data_path": str(data_file), "source": "amazon"})
    assert params["source"] == "amazon" and not params["source_inferred"]


def test_missing_data_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    _rejects(check_training_params, {"data_path": str(missing)}, "data_path", "does not exist")
    # Later tasks re-read the Params without touching the disk.
    assert check_training_params({"data_path": str(missing)}, check_files=False)["data_path"]


def test_folder_and_relative_data_paths(tmp_path: Path) -> None:
    _rejects(check_training_params, {"data_path": str(tmp_path)}, "data_path", "is a folder")
    _rejects(check_training_params, {"data_path": "data/x.csv"}, "data_path", "absolute path")


def test_unknown_source() -> None:
    _rejects(check_training_params, {"source": "yelp"}, "source", "'yelp'", "imdb")


def test_unknown_family() -> None:
    err = _rejects(
        check_training_params, {"families": ["logreg", "xgboost"]}, "families", "['xgboost']"
    )
    assert "logreg" in str(err)  # the known ones are listed


@pytest.mark.parametrize(
    ("name", "value", "phrase"),
    [
        ("n_trials", 0, "outside 1 .. 500"),
        ("n_trials", 2.5, "whole number"),
        ("n_trials", True, "whole number"),
        ("synthetic_rows", 10, "outside 100"),
        ("family_timeout_s", "soon", "whole number"),
        ("max_quarantine_share", 1.5, "outside 0 .. 1"),
    ],
)
def test_numbers_out_of_range(name: str, value: object, phrase: str) -> None:
    _rejects(check_training_params, {name: value}, name, phrase)


def test_numbers_from_the_rest_api_may_be_strings() -> None:
    assert check_training_params({"n_trials": "3"})["n_trials"] == 3


def test_extra_sources_items(data_file: Path) -> None:
    good = {"path": str(data_file), "source": "kindle"}
    inline = {
        "path": str(data_file),
        "text_column": "t",
        "label_column": "l",
        "label_map": {"a": 1},
    }
    params = check_training_params({"extra_sources": [good, inline, {"path": str(data_file)}]})
    assert [e.get("source") for e in params["extra_sources"]] == ["kindle", None, "synthetic"]
    assert "source kindle" in describe_sources(params)


@pytest.mark.parametrize(
    ("items", "name", "phrase"),
    [
        ("a.csv", "extra_sources", "not a JSON list"),
        (["a.csv"], "extra_sources[0]", "not an object"),
        ([{"source": "amazon"}], "extra_sources[0]", "has no 'path'"),
        ([{"pth": "/x.csv", "path": "/x.csv"}], "extra_sources[0]", "unknown keys ['pth']"),
        ([{"path": "/no/such/file.csv"}], "extra_sources[0]", "does not exist"),
    ],
)
def test_malformed_extra_sources(items: object, name: str, phrase: str) -> None:
    _rejects(check_training_params, {"extra_sources": items}, name, phrase)


def test_extra_source_with_unknown_source(data_file: Path) -> None:
    items = [{"path": str(data_file), "source": "yelp"}]
    _rejects(check_training_params, {"extra_sources": items}, "extra_sources[0].source", "yelp")


def test_bad_model_name() -> None:
    _rejects(check_training_params, {"model_name": "a b/c"}, "model_name", "'a b/c'")


def test_drift_defaults_need_nothing() -> None:
    params = check_drift_params({})
    assert params["window_start"] is None and params["window_end"] is None
    assert params["retrain"] is True
    assert params["retrain_data_path"] is None and params["retrain_extra_sources"] == []
    assert params["thresholds"] == {} and params["retrain_conf"] == {}


def test_window_is_parsed_as_utc_when_no_offset_is_given() -> None:
    params = check_drift_params(
        {"window_start": "2026-11-30", "window_end": "2026-11-30T12:00:00+01:00"}
    )
    assert params["window_start"] == "2026-11-30T00:00:00+00:00"
    assert params["window_end"] == "2026-11-30T12:00:00+01:00"


def test_window_end_before_start() -> None:
    params = {"window_start": "2026-11-30T10:00:00", "window_end": "2026-11-30T09:00:00"}
    _rejects(check_drift_params, params, "window_end", "is not after window_start")


def test_window_not_a_date() -> None:
    _rejects(check_drift_params, {"window_start": "yesterday"}, "window_start", "ISO-8601")


def test_unknown_threshold_key() -> None:
    _rejects(check_drift_params, {"thresholds": {"min_row": 10}}, "thresholds", "['min_row']")
    assert check_drift_params({"thresholds": {"min_rows": 10}})["thresholds"] == {"min_rows": 10}


def test_retrain_conf_is_checked_as_training_params() -> None:
    _rejects(check_drift_params, {"retrain_conf": {"n_trials": 0}}, "n_trials", "outside")


def test_missing_retraining_data(tmp_path: Path) -> None:
    params = {"retrain_data_path": str(tmp_path / "landed.csv")}
    _rejects(check_drift_params, params, "retrain_data_path", "does not exist")


def test_retraining_source_is_inferred(tmp_path: Path) -> None:
    landed = tmp_path / "amazon_product_reviews_datafiniti_34660.csv.gz"
    landed.write_bytes(b"")
    params = check_drift_params({"retrain_data_path": str(landed)})
    assert params["retrain_source"] == "amazon"


def test_use_case_picks_sources_families_model_and_thresholds() -> None:
    from pipelines.params import default_model_name

    params = check_training_params({"use_case": "credit"})
    assert params["use_case"] == "credit"
    assert params["source"] == "credit_synthetic" and params["source_inferred"]
    assert params["families"] == family_names("credit") != family_names()
    assert params["model_name"] == default_model_name("credit") == "credit-default"
    assert describe_sources(params) == "3000 generated synthetic rows of use case 'credit'"
    assert infer_source("/data/uci_credit_card.csv.gz", "credit") == "credit"
    assert infer_source("/data/other.csv", "credit") == "credit_synthetic"
    assert set(source_names("credit")) == {"credit", "credit_synthetic"}
    drift = check_drift_params({"use_case": "credit", "thresholds": {"psi_threshold": 0.3}})
    assert drift["model_name"] == "credit-default"


def test_a_source_of_another_use_case_is_rejected(data_file: Path) -> None:
    _rejects(
        check_training_params,
        {"use_case": "credit", "data_path": str(data_file), "source": "imdb"},
        "source",
        "feeds use case 'reviews'",
        "credit_synthetic",
    )
    _rejects(
        check_drift_params,
        {"use_case": "credit", "retrain_source": "kindle"},
        "retrain_source",
        "feeds use case 'reviews'",
    )


def test_unknown_use_case_and_families_of_another_use_case() -> None:
    _rejects(check_training_params, {"use_case": "fraud"}, "use_case", "'fraud'", "credit")
    _rejects(
        check_training_params,
        {"use_case": "credit", "families": ["nbsvm"]},
        "families",
        "use case 'credit' knows",
    )
    _rejects(
        check_drift_params,
        {"use_case": "credit", "retrain_conf": {"use_case": "reviews"}},
        "retrain_conf",
        "differs",
    )


def test_dag_forms_offer_every_registered_use_case() -> None:
    from airflow.dag_processing.dagbag import DagBag

    from core.usecases import use_case_names

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "airflow" / "dags"))
    for dag_id in ("training_pipeline", "drift_check"):
        param = bag.dags[dag_id].params.get_param("use_case")
        assert param.value == "reviews"
        assert param.schema["enum"] == use_case_names()
        assert set(param.schema["values_display"]) == set(use_case_names())
