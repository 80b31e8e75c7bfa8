"""Every DAG's Params are submittable as they stand in Airflow's trigger form.

The form (Airflow 3 UI, FlexibleForm) marks a field required when its schema
has a `type` without "null", and then treats None, "" (and, measured, [] and
{}) as missing: the Trigger button stays disabled. These tests apply the same
rule to the DAGs' Param specs, and check that the defaults also pass the
server-side checks of the DAGs' first tasks. The browser tests
(tests/browser) prove the same on the real UI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.params import INFER, check_drift_params, check_training_params

DAGS_DIR = Path(__file__).resolve().parents[2] / "airflow" / "dags"
CHECKS = {"training_pipeline": check_training_params, "drift_check": check_drift_params}
EMPTY: tuple[object, ...] = (None, "", [], {})


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR))
    return {dag_id: bag.dags[dag_id] for dag_id in CHECKS}


def _specs(dag) -> dict[str, dict]:
    return {name: dag.params.get_param(name).dump() for name in dag.params}


def _required(schema: dict) -> bool:
    kind = schema.get("type")
    return bool(kind) and not (isinstance(kind, list) and "null" in kind)


@pytest.mark.parametrize("dag_id", sorted(CHECKS))
def test_no_required_field_starts_empty(dags, dag_id: str) -> None:
    for name, spec in _specs(dags[dag_id]).items():
        schema = spec["schema"]
        assert schema.get("type"), f"{dag_id}.{name} has no type: the form guesses one"
        if _required(schema):
            assert spec["value"] not in EMPTY, (
                f"{dag_id}.{name} is required with an empty default: the form's Trigger "
                'button stays disabled; make it type=["null", ...] with default None'
            )
        else:
            assert spec["value"] is None, f"{dag_id}.{name} is optional: default None"


@pytest.mark.parametrize("dag_id", sorted(CHECKS))
def test_every_field_is_explained(dags, dag_id: str) -> None:
    for name, spec in _specs(dags[dag_id]).items():
        assert spec["schema"].get("title"), f"{dag_id}.{name} has no title"
        assert len(spec.get("description") or "") > 20, f"{dag_id}.{name} has no description"
        if not _required(spec["schema"]):
            assert "Empty" in spec["description"], f"{dag_id}.{name}: say what empty means"


@pytest.mark.parametrize("dag_id", sorted(CHECKS))
def test_defaults_pass_the_first_task_checks(dags, dag_id: str) -> None:
    dags[dag_id].params.validate()  # the JSON-schema check Airflow does on trigger
    CHECKS[dag_id](dags[dag_id].params.dump())


@pytest.mark.parametrize("dag_id", sorted(CHECKS))
def test_everyday_fields_first_then_an_advanced_section(dags, dag_id: str) -> None:
    sections = [spec["schema"].get("section") for spec in _specs(dags[dag_id]).values()]
    assert sections[0] is None, "the first field belongs to the default section"
    assert any(s and s.startswith("Advanced") for s in sections)
    first_advanced = next(i for i, s in enumerate(sections) if s)
    assert all(s is None for s in sections[:first_advanced])
    assert all(s for s in sections[first_advanced:]), "sections are contiguous"


def test_numbers_have_bounds_and_arrays_of_objects_are_json(dags) -> None:
    for dag_id, dag in dags.items():
        for name, spec in _specs(dag).items():
            schema = spec["schema"]
            kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if {"integer", "number"} & set(kinds):
                assert "minimum" in schema and "maximum" in schema, f"{dag_id}.{name}"
            if "array" in kinds and name.endswith("sources"):
                # items of type object → the form's JSON editor, not "one string per line"
                assert schema.get("items") == {"type": "object"}, f"{dag_id}.{name}"


def test_sources_offer_inference(dags) -> None:
    for dag_id, name in (("training_pipeline", "source"), ("drift_check", "retrain_source")):
        spec = _specs(dags[dag_id])[name]
        assert spec["value"] == INFER and spec["schema"]["enum"][0] == INFER
        assert "file name" in spec["schema"]["values_display"][INFER]


@pytest.mark.parametrize("dag_id", sorted(CHECKS))
def test_doc_md_explains_every_param(dags, dag_id: str) -> None:
    doc = dags[dag_id].doc_md
    for name in dags[dag_id].params:
        assert f"| `{name}` |" in doc, f"{dag_id} doc_md does not describe {name}"


def test_tasks_that_produce_something_link_to_it(dags) -> None:
    def names(dag_id: str, task_id: str) -> set[str]:
        return {link.name for link in dags[dag_id].get_task(task_id).operator_extra_links}

    assert names("training_pipeline", "register") >= {"Registered model version", "MLflow run"}
    assert "Great Expectations Data Docs" in names("training_pipeline", "validate_raw")
    assert "Quarantined rows" in names("training_pipeline", "validate_raw")
    assert "Evidently drift report" in names("drift_check", "detect_drift")
