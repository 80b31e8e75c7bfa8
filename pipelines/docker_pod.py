"""Run a task pod's container with ``docker run``: the pod spec, executed without a cluster.

For machines with a Docker engine and no Kubernetes API (a laptop, CI): the
exact ``V1Pod`` kubernetes mode would submit is translated to one
``docker run`` of its main container -- image, command and args, env, resource
limits (``--cpus``/``--memory``), user, group, ``fsGroup``, dropped
capabilities, no privilege escalation -- with the XCom sidecar's shared volume
emulated by a host folder mounted at ``/airflow/xcom``. The sidecar itself is
not started: it only serves ``return.json`` to the API server, which is read
here directly.

Selected with ``DRIFTLOOP_POD_BACKEND=docker``; the cluster's objects are
stood in for by settings:

- ``DRIFTLOOP_POD_VOLUMES``: ``claim=host-folder[,claim=host-folder]`` for the
  pod's PersistentVolumeClaims (emptyDir volumes become fresh temp folders);
- ``DRIFTLOOP_POD_ENV_DIR``: a folder with ``<name>.env`` per ConfigMap or
  Secret named in ``envFrom`` (``KEY=value`` lines, as ``docker --env-file``);
- ``DRIFTLOOP_POD_NETWORK``: the docker network (default ``none``; ``host``
  lets the container reach services on the host's loopback, e.g. Postgres).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENV_VOLUMES = "DRIFTLOOP_POD_VOLUMES"
ENV_ENV_DIR = "DRIFTLOOP_POD_ENV_DIR"
ENV_NETWORK = "DRIFTLOOP_POD_NETWORK"
XCOM_MOUNT = "/airflow/xcom"
SIDECAR_NAME = "airflow-xcom-sidecar"
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_FACTORS = {
    None: 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


class PodRunError(RuntimeError):
    """The pod cannot be run under docker, or its container failed."""


def cpus(quantity: str) -> str:
    """A Kubernetes CPU quantity ("2", "500m") as ``docker --cpus``."""
    value = str(quantity)
    return str(int(value[:-1]) / 1000) if value.endswith("m") else str(float(value))


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity ("3Gi", "512Mi", "1G") in bytes."""
    match = _MEMORY.match(str(quantity))
    if not match:
        raise PodRunError(f"unsupported memory quantity {quantity!r}")
    return int(float(match.group(1)) * _FACTORS[match.group(2)])


def parse_volumes(raw: str | None) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in filter(None, (raw or "").split(",")):
        claim, _, folder = item.partition("=")
        if not folder:
            raise PodRunError(f"{ENV_VOLUMES} entries are claim=host-folder, got {item!r}")
        mapping[claim.strip()] = folder.strip()
    return mapping


def main_container(manifest: Mapping[str, Any]) -> dict[str, Any]:
    containers = [c for c in manifest["spec"]["containers"] if c["name"] != SIDECAR_NAME]
    if len(containers) != 1:
        raise PodRunError(f"expected one task container, found {[c['name'] for c in containers]}")
    return dict(containers[0])


def docker_run_command(
    manifest: Mapping[str, Any],
    xcom_dir: Path,
    scratch_dir: Path,
    volumes: Mapping[str, str],
    env_dir: Path | None,
    network: str = "none",
) -> list[str]:
    """The ``docker run`` argv equivalent to the pod's task container."""
    spec = manifest["spec"]
    container = main_container(manifest)
    pod_security = spec.get("securityContext") or {}
    security = container.get("securityContext") or {}
    name = manifest["metadata"]["name"]
    argv = ["docker", "run", "--rm", "--name", name, "--network", network]
    if network != "host":  # a pod's hostname is its name; the host network keeps the host's
        argv += ["--hostname", name[:63]]
    for key, value in sorted((manifest["metadata"].get("labels") or {}).items()):
        argv += ["--label", f"{key}={value}"]
    user = security.get("runAsUser", pod_security.get("runAsUser"))
    group = security.get("runAsGroup", pod_security.get("runAsGroup"))
    if user is not None:
        argv += ["--user", f"{user}:{group}" if group is not None else str(user)]
    if pod_security.get("fsGroup") is not None:
        argv += ["--group-add", str(pod_security["fsGroup"])]
    if security.get("readOnlyRootFilesystem"):
        argv.append("--read-only")
    if security.get("allowPrivilegeEscalation") is False:
        argv += ["--security-opt", "no-new-privileges"]
    for capability in (security.get("capabilities") or {}).get("drop") or []:
        argv += ["--cap-drop", capability]
    limits = (container.get("resources") or {}).get("limits") or {}
    if "cpu" in limits:
        argv += ["--cpus", cpus(limits["cpu"])]
    if "memory" in limits:
        argv += ["--memory", str(memory_bytes(limits["memory"]))]
    argv += _volume_args(spec, container, xcom_dir, scratch_dir, volumes)
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef") or source.get("secretRef") or {}
        path = (env_dir or Path("/nonexistent")) / f"{ref.get('name')}.env"
        if not path.is_file():
            if ref.get("optional"):
                continue
            raise PodRunError(f"envFrom {ref.get('name')!r}: no {path} (set {ENV_ENV_DIR})")
        argv += ["--env-file", str(path)]
    for env in container.get("env") or []:
        value = env.get("value", _field_value(env, manifest, network))
        if value is not None:
            argv += ["--env", f"{env['name']}={value}"]
    if container.get("workingDir"):
        argv += ["--workdir", container["workingDir"]]
    command = list(container.get("command") or [])
    if command:
        argv += ["--entrypoint", command[0]]
    argv.append(container["image"])
    argv += command[1:] + list(container.get("args") or [])
    return argv


def _field_value(env: Mapping[str, Any], manifest: Mapping[str, Any], network: str) -> str | None:
    """The downward API fields a task pod uses (no network, or the host's: loopback is the IP)."""
    path = ((env.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
    if path == "metadata.name":
        return str(manifest["metadata"]["name"])
    if path == "metadata.namespace":
        return str(manifest["metadata"].get("namespace", ""))
    if path == "status.podIP" and network in ("none", "host"):
        return "127.0.0.1"
    return None  # not known before the container starts: the image's default applies


def _volume_args(
    spec: Mapping[str, Any],
    container: Mapping[str, Any],
    xcom_dir: Path,
    scratch_dir: Path,
    volumes: Mapping[str, str],
) -> list[str]:
    by_name = {v["name"]: v for v in spec.get("volumes") or []}
    args: list[str] = []
    for mount in container.get("volumeMounts") or []:
        volume = by_name.get(mount["name"])
        if volume is None:
            raise PodRunError(f"volumeMount {mount['name']!r} has no volume in the pod")
        if mount["mountPath"] == XCOM_MOUNT:
            source = str(xcom_dir)
        elif "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            if claim not in volumes:
                raise PodRunError(f"claim {claim!r} has no host folder (set {ENV_VOLUMES})")
            source = volumes[claim]
        elif "emptyDir" in volume:
            folder = scratch_dir / mount["name"]
            folder.mkdir(mode=0o777, exist_ok=True)
            folder.chmod(0o1777)
            source = str(folder)
        else:
            raise PodRunError(f"volume {mount['name']!r}: only PVC and emptyDir are emulated")
        suffix = ":ro" if mount.get("readOnly") else ""
        args += ["--volume", f"{source}:{mount['mountPath']}{suffix}"]
    return args


def run_manifest(
    manifest: Mapping[str, Any],
    log: logging.Logger | Any | None = None,
    volumes: Mapping[str, str] | None = None,
    env_dir: Path | None = None,
    network: str | None = None,
) -> Any:
    """Run the pod's container to completion; return its XCom (``return.json``) or None."""
    log = log or logging.getLogger(__name__)
    volumes = parse_volumes(os.environ.get(ENV_VOLUMES)) if volumes is None else volumes
    if env_dir is None and os.environ.get(ENV_ENV_DIR):
        env_dir = Path(os.environ[ENV_ENV_DIR])
    network = network or os.environ.get(ENV_NETWORK, "none")
    scratch = Path(tempfile.mkdtemp(prefix="driftloop-pod-"))
    try:
        xcom_dir = scratch / "xcom"
        xcom_dir.mkdir()
        xcom_dir.chmod(0o1777)
        argv = docker_run_command(manifest, xcom_dir, scratch, volumes, env_dir, network)
        log.info("pod %s: running under docker", manifest["metadata"]["name"])
        tail: deque[str] = deque(maxlen=40)
        with subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                tail.append(line.rstrip())
                log.info("[base] %s", line.rstrip())
        if proc.returncode != 0:
            raise PodRunError(
                f"pod {manifest['metadata']['name']} exited {proc.returncode}:\n" + "\n".join(tail)
            )
        result_file = xcom_dir / "return.json"
        return json.loads(result_file.read_text()) if result_file.exists() else None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_pod(pod: Any, log: logging.Logger | Any | None = None) -> Any:
    """``run_manifest`` for a ``V1Pod`` as the provider builds it."""
    from kubernetes.client import ApiClient

    return run_manifest(ApiClient().sanitize_for_serialization(pod), log=log)
