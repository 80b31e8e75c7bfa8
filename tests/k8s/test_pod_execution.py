"""Task pods executed: the rendered pod's container runs under ``docker run``.

Needs a Docker engine and a fresh pipeline image (``make images``): these tests
run in ``make test-k8s-pods`` (DRIFTLOOP_REQUIRE_DOCKER=1), where a missing
engine or image fails; ``make test`` skips them.

The pods are the ones kubernetes mode submits (built by the provider from the
DAGs), run with their image, command, env, user and resource limits; the XCom
sidecar's volume is a host folder and ``return.json`` becomes the XCom. Full
``training_pipeline`` runs go through it, the light tasks in-process and every
heavy task in a container: once with the lake on a shared volume (a host
folder), once with the lake in object storage (``DRIFTLOOP_LAKE=s3`` on a
``moto_server`` at 127.0.0.1, MLflow as a server as in the cluster).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.k8s.podspecs import (
    DAGS_DIR,
    REPO_ROOT,
    container,
    parse_dags,
    pipeline_image,
    render_pod,
)

pytestmark = [pytest.mark.slow, pytest.mark.docker]
FS_GROUP = 50000


def _require(reason: str) -> None:
    if os.environ.get("DRIFTLOOP_REQUIRE_DOCKER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def image() -> str:
    if os.environ.get("DRIFTLOOP_REQUIRE_DOCKER") != "1":
        # An image left from an older build would test old code: run after `make images`.
        pytest.skip("pod execution runs in `make test-k8s-pods`, after `make images`")
    if shutil.which("docker") is None:
        _require("no docker CLI")
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if info.returncode != 0:
        _require("no Docker engine answers (`docker info` failed)")
    name = pipeline_image()
    found = subprocess.run(
        ["docker", "image", "inspect", name], capture_output=True, text=True, check=False
    )
    if found.returncode != 0:
        _require(f"image {name} missing: build it with `make images`")
    return name


def shared_folder(path: Path) -> Path:
    """A lake the pods' user can write: group FS_GROUP, setgid (what fsGroup does on a volume)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, -1, FS_GROUP)
    path.chmod(0o2775)
    return path


@pytest.fixture()
def pod_env(tmp_path: Path, image: str, monkeypatch: pytest.MonkeyPatch):
    """Docker backend settings: the lake claim is a host folder mounted at the same path."""
    lake = shared_folder(tmp_path / "lake")
    envs = tmp_path / "envs"
    envs.mkdir()
    (envs / "driftloop-config.env").write_text(
        f"MLFLOW_TRACKING_URI=sqlite:///{lake}/mlflow/mlflow.db\nGX_ANALYTICS_ENABLED=false\n"
    )
    (envs / "driftloop-secrets.env").write_text("")
    config = yaml.safe_load((REPO_ROOT / "pipelines/config/kubernetes.yaml").read_text())
    config["lake"]["mount_path"] = str(lake)
    config["kinds"]["featurize"]["env"]["SPARK_MASTER"] = "local[2]"
    config_path = tmp_path / "kubernetes.yaml"
    config_path.write_text(yaml.safe_dump(config))
    for key, value in {
        "DRIFTLOOP_EXECUTION": "kubernetes",
        "DRIFTLOOP_POD_BACKEND": "docker",
        "DRIFTLOOP_K8S_CONFIG": str(config_path),
        "DRIFTLOOP_PIPELINE_IMAGE": image,
        "DRIFTLOOP_POD_VOLUMES": f"{config['lake']['claim_name']}={lake}",
        "DRIFTLOOP_POD_ENV_DIR": str(envs),
        "DRIFTLOOP_HOME": str(lake),
        "MLFLOW_TRACKING_URI": f"sqlite:///{lake}/mlflow/mlflow.db",
        # as deploy/k8s/airflow/values.yaml: room for the pod spec as a rendered field
        "AIRFLOW__CORE__MAX_TEMPLATED_FIELD_LENGTH": "65536",
    }.items():
        monkeypatch.setenv(key, value)
    old_umask = os.umask(0o002)  # files the host steps write stay group-writable
    yield lake
    os.umask(old_umask)


def test_rendered_pod_runs_and_returns_its_xcom(pod_env: Path) -> None:
    """featurize's pod, as rendered from the DAG, runs spark-submit in the image."""
    from pipelines.docker_pod import docker_run_command, run_manifest
    from synthetic import generate_reviews

    run_dir = pod_env / "lake" / "runs" / "pod-test"
    run_dir.mkdir(parents=True)
    accepted = run_dir / "accepted.parquet"
    frame = generate_reviews(300, seed=3)
    frame["source"], frame["source_row"] = "synthetic", range(len(frame))
    frame.to_parquet(accepted, index=False)
    sample = {"args": [{"accepted_path": str(accepted), "run_dir": str(run_dir)}]}
    manifest = render_pod(parse_dags("kubernetes"), "training_pipeline", "featurize", sample)
    base = container(manifest)
    env_dir = Path(os.environ["DRIFTLOOP_POD_ENV_DIR"])
    argv = docker_run_command(
        manifest, Path("/x"), pod_env, {"driftloop-lake": str(pod_env)}, env_dir
    )
    # the container gets exactly the pod's image, command, user and limits
    tail = argv[argv.index("--entrypoint") + 1 :]
    assert tail == ["python", base["image"], "-m", "pipelines.pod_runtime"]
    assert argv[argv.index("--user") + 1] == "50000:50000"
    assert argv[argv.index("--cpus") + 1] == "2.0"
    assert argv[argv.index("--memory") + 1] == str(3 * 2**30)

    result = run_manifest(manifest)

    assert result["run_dir"] == str(run_dir)
    assert result["features_dir"] == str(run_dir / "spark" / "features")
    assert result["stats"]["rows_read"] == 300
    features = list(Path(result["features_dir"]).glob("**/*.parquet"))
    assert features, "the container wrote no features into the lake"


def test_failing_pod_fails_the_task(pod_env: Path) -> None:
    from pipelines.docker_pod import PodRunError, run_manifest

    sample = {
        "args": [{"accepted_path": str(pod_env / "missing.parquet"), "run_dir": str(pod_env)}]
    }
    manifest = render_pod(parse_dags("kubernetes"), "training_pipeline", "featurize", sample)
    with pytest.raises(PodRunError, match="exited"):
        run_manifest(manifest)


@pytest.fixture()
def postgres_stores(pod_env: Path, monkeypatch: pytest.MonkeyPatch):
    """MLflow and Optuna on Postgres, as in the cluster (pods and host share them over loopback)."""
    import uuid

    import psycopg2

    try:
        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    except psycopg2.OperationalError as exc:
        _require(f"PostgreSQL on 127.0.0.1:5432 unreachable: {exc}")
    admin.autocommit = True
    suffix = uuid.uuid4().hex[:8]
    names = {"mlflow": f"k8s_mlflow_{suffix}", "optuna": f"k8s_optuna_{suffix}"}
    with admin.cursor() as cursor:
        for name in names.values():
            cursor.execute(f"CREATE DATABASE {name}")
    url = "postgresql+psycopg2://postgres@127.0.0.1:5432/{}"
    settings = {
        "MLFLOW_TRACKING_URI": url.format(names["mlflow"]),
        "DRIFTLOOP_OPTUNA_STORAGE": url.format(names["optuna"]),
    }
    env_dir = Path(os.environ["DRIFTLOOP_POD_ENV_DIR"])
    (env_dir / "driftloop-config.env").write_text(
        "".join(f"{k}={v}\n" for k, v in {**settings, "GX_ANALYTICS_ENABLED": "false"}.items())
    )
    for key, value in {**settings, "DRIFTLOOP_POD_NETWORK": "host"}.items():
        monkeypatch.setenv(key, value)
    yield settings
    with admin.cursor() as cursor:
        for name in names.values():
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


@pytest.mark.airflow
@pytest.mark.spark
@pytest.mark.postgres
def test_training_pipeline_in_kubernetes_mode(
    pod_env: Path, postgres_stores: dict, airflow_db: Path
) -> None:
    """The whole DAG in kubernetes mode: featurize, each tune and refit run as pod containers."""
    import mlflow
    from airflow.dag_processing.dagbag import DagBag

    from training.mlflow_utils import configure

    bag = DagBag(dag_folder=str(DAGS_DIR))
    dag = bag.dags["training_pipeline"]
    model = "k8s-review-sentiment"
    run = dag.test(
        run_conf={
            "families": ["logreg", "naive_bayes"],
            "n_trials": 2,
            "family_timeout_s": 120,
            "data_path": "",
            "synthetic_rows": 800,
            "model_name": model,
            "reason": "kubernetes-mode test",
        }
    )
    states = {(ti.task_id, ti.map_index): str(ti.state) for ti in run.get_task_instances()}
    assert all(s.endswith("success") for s in states.values()), states
    assert {t for t, _ in states} >= {"featurize", "tune", "refit", "register"}
    # each pod task instance kept the pod it ran as a rendered field (the UI shows it)
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    with create_session() as session:
        for ti in run.get_task_instances():
            if ti.task_id in ("featurize", "tune", "refit"):
                fields = RenderedTaskInstanceFields.get_templated_fields(ti, session=session)
                pod = yaml.safe_load(fields["pod_spec"])
                assert pod["kind"] == "Pod", (ti.task_id, ti.map_index)
                assert container(pod)["image"] == os.environ["DRIFTLOOP_PIPELINE_IMAGE"]
    configure()
    version = mlflow.MlflowClient().get_model_version_by_alias(model, "champion")
    refit_run = mlflow.MlflowClient().get_run(version.run_id)
    assert refit_run.data.tags["trigger_reason"] == "kubernetes-mode test"
    # studies were written by the tune containers into the shared lake
    assert (pod_env / "lake" / "runs").exists()


@pytest.fixture()
def s3_lake(pod_env: Path, postgres_stores: dict, monkeypatch: pytest.MonkeyPatch):
    """The lake in a bucket of moto_server; MLflow a server with its own artifact store.

    Nothing is shared through the file system any more: the pods get an empty
    scratch folder at the lake's path (no claim), the in-process steps work on
    their own local copy (``pod_env``), and both stage through the bucket. The
    pods use the host's network (``postgres_stores``), so both servers listen on
    127.0.0.1 only.
    """
    from pipelines.lake import s3_filesystem
    from tests.k8s.s3server import CREDENTIALS, free_port, make_bucket, start_moto, wait_for_port

    logs = pod_env.parent / "servers"
    logs.mkdir()
    moto, endpoint = start_moto(logs / "moto.log")
    mlflow_port = free_port()
    with (logs / "mlflow.log").open("w") as log:
        server = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "server",
                "--backend-store-uri",
                postgres_stores["MLFLOW_TRACKING_URI"],
                "--artifacts-destination",
                str(logs / "mlflow-artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        for key, value in CREDENTIALS.items():
            monkeypatch.setenv(key, value)
        bucket = make_bucket(endpoint)
        wait_for_port(mlflow_port, server, logs / "mlflow.log", 180)
        lake = {
            "DRIFTLOOP_LAKE": "s3",
            "DRIFTLOOP_LAKE_URL": f"s3://{bucket}/driftloop",
            "DRIFTLOOP_LAKE_ENDPOINT": endpoint,
        }
        tracking = f"http://127.0.0.1:{mlflow_port}"
        env_dir = Path(os.environ["DRIFTLOOP_POD_ENV_DIR"])
        config = {
            "MLFLOW_TRACKING_URI": tracking,
            "DRIFTLOOP_OPTUNA_STORAGE": postgres_stores["DRIFTLOOP_OPTUNA_STORAGE"],
            "GX_ANALYTICS_ENABLED": "false",
        }
        (env_dir / "driftloop-config.env").write_text(
            "".join(f"{k}={v}\n" for k, v in config.items())
        )
        (env_dir / "driftloop-secrets.env").write_text(
            "".join(f"{k}={v}\n" for k, v in CREDENTIALS.items())
        )
        for key, value in {**lake, "MLFLOW_TRACKING_URI": tracking}.items():
            monkeypatch.setenv(key, value)
        # no claim to mount: a pod that still asked for the lake volume would fail to start
        monkeypatch.delenv("DRIFTLOOP_POD_VOLUMES")
        from pipelines.lake import make_settings

        settings = make_settings("s3", lake["DRIFTLOOP_LAKE_URL"], endpoint)
        yield settings, s3_filesystem(settings)
    finally:
        server.terminate()
        moto.terminate()
        server.wait(timeout=30)
        moto.wait(timeout=10)


@pytest.mark.airflow
@pytest.mark.spark
@pytest.mark.postgres
def test_training_pipeline_in_kubernetes_mode_with_the_lake_in_s3(
    pod_env: Path, s3_lake: tuple, airflow_db: Path
) -> None:
    """The whole DAG with DRIFTLOOP_LAKE=s3: every step stages its lake paths through the bucket."""
    import mlflow
    from airflow.dag_processing.dagbag import DagBag

    from tests.k8s.s3server import bucket_keys
    from training.mlflow_utils import configure

    settings, filesystem = s3_lake
    bag = DagBag(dag_folder=str(DAGS_DIR))
    dag = bag.dags["training_pipeline"]
    featurize = dag.get_task("featurize")
    assert not [v for v in featurize.volumes if v.persistent_volume_claim], "lake claim mounted"
    model = "k8s-s3-review-sentiment"
    run = dag.test(
        run_conf={
            "families": ["logreg"],
            "n_trials": 2,
            "family_timeout_s": 120,
            "data_path": "",
            "synthetic_rows": 600,
            "model_name": model,
            "reason": "object-storage lake test",
        }
    )
    states = {(ti.task_id, ti.map_index): str(ti.state) for ti in run.get_task_instances()}
    assert all(s.endswith("success") for s in states.values()), states
    configure()
    version = mlflow.MlflowClient().get_model_version_by_alias(model, "champion")
    assert mlflow.MlflowClient().get_run(version.run_id).data.tags["trigger_reason"] == (
        "object-storage lake test"
    )
    keys = bucket_keys(filesystem, settings.bucket, settings.prefix)
    runs = {k.split("/")[2] for k in keys if k.startswith("lake/runs/")}
    assert len(runs) == 1, keys
    run_dir = f"lake/runs/{runs.pop()}"
    # written by ingest and validate_raw in the worker, uploaded, read by the featurize pod
    assert any(k.startswith(f"{run_dir}/") and "accepted" in k for k in keys), keys
    # written by Spark in the featurize pod's scratch lake, uploaded when the pod succeeded
    features = [k for k in keys if k.startswith(f"{run_dir}/spark/features/")]
    assert any(k.endswith(".parquet") for k in features), keys
    assert f"{run_dir}/spark/stats.json" in keys
    # the worker's steps after featurize (plan_search, evaluate, register) read the
    # features from their own copy: staged down from the bucket, byte for byte
    local = pod_env / features[0]
    with filesystem.open_input_stream(f"{settings.bucket}/{settings.prefix}/{features[0]}") as src:
        assert local.read_bytes() == src.read()
