"""Every pod kubernetes mode would submit, built from the DAGs by the provider and validated.

No cluster: ``KubernetesPodOperator.build_pod_request_obj(dry_run=True)`` gives
the exact ``V1Pod``; ``kubernetes-validate`` checks it against the bundled
OpenAPI schemas of the targeted Kubernetes version (strict: unknown fields fail).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.execution import load_pod_settings
from tests.k8s.podspecs import (
    KIND_OF,
    KUBERNETES_VERSION,
    REPO_ROOT,
    SAMPLE_ARGS,
    container,
    env_of,
    parse_dags,
    render_pod,
)


@pytest.fixture(scope="module")
def bag():
    return parse_dags("kubernetes")


@pytest.fixture(scope="module")
def pods(bag) -> dict[tuple[str, str], dict]:
    return {key: render_pod(bag, *key) for key in SAMPLE_ARGS}


def test_every_heavy_task_has_a_pod(bag, pods) -> None:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    pod_tasks = {
        (dag_id, task.task_id)
        for dag_id, dag in bag.dags.items()
        for task in dag.tasks
        if issubclass(task.operator_class if task.is_mapped else type(task), KubernetesPodOperator)
    }
    assert pod_tasks == set(pods)


@pytest.mark.parametrize("key", list(SAMPLE_ARGS), ids=lambda k: f"{k[0]}.{k[1]}")
def test_pod_validates_against_kubernetes_schema(pods, key) -> None:
    import kubernetes_validate

    manifest = pods[key]
    assert kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("key", list(SAMPLE_ARGS), ids=lambda k: f"{k[0]}.{k[1]}")
def test_pod_image_command_account_and_resources(pods, key) -> None:
    settings = load_pod_settings()
    manifest, kind = pods[key], KIND_OF[key]
    spec, base = manifest["spec"], container(manifest)
    assert base["image"] == settings.image
    assert base["command"] == ["python", "-m", "pipelines.pod_runtime"]
    assert "args" not in base or not base["args"]
    assert spec["serviceAccountName"] == "driftloop-task"
    assert spec["automountServiceAccountToken"] is False
    assert manifest["metadata"]["namespace"] == "driftloop"
    assert spec["restartPolicy"] == "Never"
    assert base["resources"] == settings.resources[kind]
    assert manifest["metadata"]["labels"]["driftloop.io/task-kind"] == kind
    assert manifest["metadata"]["labels"]["task_id"] == key[1]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert base["securityContext"]["allowPrivilegeEscalation"] is False
    # The XCom sidecar shares /airflow/xcom with the task container.
    sidecar = container(manifest, "airflow-xcom-sidecar")
    assert {"name": "xcom", "mountPath": "/airflow/xcom"} in sidecar["volumeMounts"]
    assert {"name": "xcom", "mountPath": "/airflow/xcom"} in base["volumeMounts"]
    lake = {"name": "lake", "mountPath": settings.lake_mount_path}
    assert lake in base["volumeMounts"]
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in spec["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == [settings.lake_claim]
    # the volume lake: chosen in the pod config, and said so to the pod
    assert settings.lake.mode == "volume"
    env = env_of(manifest)
    assert env["DRIFTLOOP_LAKE"] == "volume"
    assert "DRIFTLOOP_LAKE_URL" not in env


@pytest.mark.parametrize("key", list(SAMPLE_ARGS), ids=lambda k: f"{k[0]}.{k[1]}")
def test_pod_env_carries_task_payload_and_settings(bag, pods, key) -> None:
    env = env_of(pods[key])
    assert env["DRIFTLOOP_HOME"] == "/var/lib/driftloop"
    assert env["DRIFTLOOP_TASK_FUNCTION"] == key[1]
    source = env["DRIFTLOOP_TASK_SOURCE"]
    assert f"\ndef {key[1]}(" in f"\n{source}"
    assert "@heavy_task" not in source
    compile(source, key[1], "exec")
    sample = SAMPLE_ARGS[key]
    args = json.loads(env["DRIFTLOOP_TASK_ARGS"])
    assert args["args"] == sample.get("args", [])
    assert args["kwargs"] == sample.get("mapped", sample.get("kwargs", {}))
    context = json.loads(env["DRIFTLOOP_TASK_CONTEXT"])
    assert context["run_id"] == "manual__2026-01-01"
    assert context["params"] == json.loads(json.dumps(dict(bag.dags[key[0]].params)))
    env_from = container(pods[key])["envFrom"]
    assert {"configMapRef": {"name": "driftloop-config"}} in env_from
    assert {"secretRef": {"name": "driftloop-secrets"}} in env_from


def test_featurize_pod_is_a_spark_client_driver(pods) -> None:
    env = env_of(pods[("training_pipeline", "featurize")])
    assert env["SPARK_MASTER"].startswith("spark://")
    assert env["SPARK_LOCAL_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert "SPARK_MASTER" not in env_of(pods[("training_pipeline", "tune")])


def test_operator_settings_not_in_the_manifest(bag) -> None:
    """Pod lifecycle settings live on the operator: delete only succeeded pods, stream logs."""
    for key in SAMPLE_ARGS:
        task = bag.dags[key[0]].get_task(key[1])
        kwargs = task.partial_kwargs if task.is_mapped else vars(task)
        assert getattr(kwargs["on_finish_action"], "value", kwargs["on_finish_action"]) == (
            "delete_succeeded_pod"
        )
        assert kwargs["get_logs"] is True
        assert kwargs["do_xcom_push"] is True
    tune = bag.dags["training_pipeline"].get_task("tune")
    assert tune.partial_kwargs["max_active_tis_per_dagrun"] == 4


def test_ui_names_pod_tasks_by_their_operator(bag) -> None:
    """Airflow's UI labels a task with its `operator_name` (graph node, task header)."""
    for dag_id, dag in bag.dags.items():
        for task in dag.tasks:
            name = task.operator_name
            if (dag_id, task.task_id) in SAMPLE_ARGS:
                assert name.startswith("KubernetesPodOperator"), (task.task_id, name)
            else:
                assert "KubernetesPodOperator" not in name, (task.task_id, name)


def test_rendered_template_shows_the_pod(bag) -> None:
    """What the UI's Rendered Template tab shows for a pod task: the full pod spec."""
    from tests.k8s.podspecs import bind_operator, task_context

    dag = bag.dags["training_pipeline"]
    operator = bind_operator(dag, "refit", SAMPLE_ARGS[("training_pipeline", "refit")])
    operator.render_template_fields(task_context(dag, "refit", "manual__x"))
    shown = yaml.safe_load(operator.pod_spec)
    assert shown["kind"] == "Pod"
    assert container(shown)["image"] == load_pod_settings().image
    assert "pod_spec" in operator.template_fields


def test_pod_runtime_runs_the_shipped_function(tmp_path: Path) -> None:
    """The pod's command, fed the rendered env of a pod task, returns the function's value."""
    from airflow.sdk import dag as dag_decorator
    from airflow.sdk import get_current_context

    from pipelines.execution import load_pod_settings as settings_loader
    from pipelines.pod_operator import pod_manifest, pod_task
    from tests.k8s.podspecs import task_context

    @dag_decorator(dag_id="pod_payload_probe", schedule=None, params={"scale": 3})
    def probe():
        @pod_task("tune", settings_loader())
        def scale(spec: dict, offset: int = 0) -> dict:
            context = get_current_context()
            factor = context["params"]["scale"]
            return {
                "scaled": [v * factor + offset for v in spec["values"]],
                "run": context["run_id"],
            }

        scale(spec={"values": [1, 2]}, offset=1)

    dag = probe()
    operator = dag.get_task("scale")
    operator.op_kwargs = {"spec": {"values": [1, 2]}, "offset": 1}
    manifest = pod_manifest(
        operator.build_pod_request_obj(task_context(dag, "scale", "run-7"), dry_run=True)
    )
    base = container(manifest)
    env = {**os.environ, **{e["name"]: e["value"] for e in base["env"] if "value" in e}}
    env["DRIFTLOOP_XCOM_PATH"] = str(tmp_path / "return.json")
    command = [sys.executable if base["command"][0] == "python" else base["command"][0]]
    subprocess.run([*command, *base["command"][1:]], env=env, cwd=REPO_ROOT, check=True)
    assert json.loads((tmp_path / "return.json").read_text()) == {"scaled": [4, 7], "run": "run-7"}


def test_pod_runtime_refuses_to_run_without_payload(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_TASK_")}
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.pod_runtime"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "DRIFTLOOP_TASK_FUNCTION is not set" in result.stderr


@pytest.mark.parametrize("key", list(SAMPLE_ARGS), ids=lambda k: f"{k[0]}.{k[1]}")
def test_pod_meets_restricted_pod_security(pods, key) -> None:
    from tests.k8s.podspecs import restricted_violations

    assert restricted_violations(pods[key]["spec"]) == []


def test_pod_carries_the_dag_file_helpers_its_task_calls(bag) -> None:
    """A task calling a helper defined in its DAG file gets the helper's source in the pod."""
    import inspect

    from pipelines.pod_operator import shipped_source

    for key in SAMPLE_ARGS:
        task = bag.dags[key[0]].get_task(key[1])
        func = task.python_callable
        module = inspect.getmodule(func)
        helpers = {
            name
            for name in func.__code__.co_names
            if inspect.isfunction(getattr(module, name, None))
            and getattr(module, name).__module__ == func.__module__
        }
        source = shipped_source(func)
        for helper in helpers:
            assert f"def {helper}(" in source, (key, helper)
        assert "get_current_context =" not in source and "import get_current_context" not in source


# The object-storage lake (pipelines/lake.py), chosen with DRIFTLOOP_LAKE=s3.
S3_LAKE = {
    "DRIFTLOOP_LAKE": "s3",
    "DRIFTLOOP_LAKE_URL": "s3://driftloop-lake/prod",
    "DRIFTLOOP_LAKE_ENDPOINT": "https://minio.storage.svc:9000",
}


@pytest.fixture(scope="module")
def s3_pods() -> dict[tuple[str, str], dict]:
    bag = parse_dags("kubernetes", S3_LAKE)
    return {key: render_pod(bag, *key) for key in SAMPLE_ARGS}


@pytest.mark.parametrize("key", list(SAMPLE_ARGS), ids=lambda k: f"{k[0]}.{k[1]}")
def test_s3_lake_pods_mount_no_lake_volume_and_carry_the_lake_settings(s3_pods, key) -> None:
    import kubernetes_validate

    from tests.k8s.podspecs import restricted_violations

    settings = load_pod_settings()
    manifest = s3_pods[key]
    spec, base = manifest["spec"], container(manifest)
    assert kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    assert restricted_violations(spec) == []
    assert not [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
    assert "lake" not in {v["name"] for v in spec["volumes"]}
    # the task works on a scratch copy at the lake's path: an emptyDir, not shared
    by_name = {v["name"]: v for v in spec["volumes"]}
    mount = next(m for m in base["volumeMounts"] if m["mountPath"] == settings.lake_mount_path)
    assert by_name[mount["name"]] == {"name": mount["name"], "emptyDir": {}}
    env = env_of(manifest)
    assert {k: env[k] for k in S3_LAKE} == S3_LAKE
    assert env["DRIFTLOOP_LAKE_STAGE"] == "landing"
    assert env["DRIFTLOOP_HOME"] == settings.lake_mount_path
    assert base["command"] == ["python", "-m", "pipelines.pod_runtime"]


def test_s3_lake_featurize_runs_spark_in_its_pod(s3_pods) -> None:
    """Spark workers cannot see a pod's scratch lake: the executors run in the featurize pod."""
    env = env_of(s3_pods[("training_pipeline", "featurize")])
    assert env["SPARK_MASTER"] == "local[*]"
    assert "SPARK_MASTER" not in env_of(s3_pods[("training_pipeline", "tune")])


def test_s3_lake_without_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.execution import ExecutionConfigError

    monkeypatch.setenv("DRIFTLOOP_LAKE", "s3")
    monkeypatch.delenv("DRIFTLOOP_LAKE_URL", raising=False)
    with pytest.raises(ExecutionConfigError, match="DRIFTLOOP_LAKE_URL=s3://bucket/prefix"):
        load_pod_settings()
    monkeypatch.setenv("DRIFTLOOP_LAKE", "ceph")
    with pytest.raises(ExecutionConfigError, match="one of volume, s3"):
        load_pod_settings()


def test_lake_choice_read_from_the_pod_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lake.store: s3`` in the config file alone switches the pods and the workers' steps."""
    from pipelines.lake import lake_settings

    for key in S3_LAKE:
        monkeypatch.delenv(key, raising=False)
    config = yaml.safe_load((REPO_ROOT / "pipelines/config/kubernetes.yaml").read_text())
    assert config["lake"]["store"] == "volume"  # the default deployment: the shared volume
    config["lake"] |= {"store": "s3", "url": "s3://bucket/lake", "claim_name": ""}
    path = tmp_path / "kubernetes.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("DRIFTLOOP_K8S_CONFIG", str(path))
    settings = load_pod_settings()
    assert (settings.lake.mode, settings.lake.url) == ("s3", "s3://bucket/lake")
    assert lake_settings() == settings.lake  # the worker-side steps read the same choice
