"""The heavy DAG tasks as Kubernetes pods: same function, its own pod, results through XCom.

A ``PodTaskOperator`` is a ``KubernetesPodOperator`` that runs a TaskFlow
function: the function's source, its (already resolved, JSON) arguments and the
part of the task context the function reads (Params, run id, data interval) go
into the pod as environment variables, and the pipeline image's
``python -m pipelines.pod_runtime`` runs it and writes the return value to
``/airflow/xcom/return.json``, where the provider's XCom sidecar picks it up.

Unlike the provider's ``@task.kubernetes``, the payload is attached while the
pod request is built, so ``build_pod_request_obj(dry_run=True)`` yields exactly
the pod a run would submit, and the function may call ``get_current_context()``
in the pod as it does in a worker.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import textwrap
import types
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, ClassVar

from airflow.providers.cncf.kubernetes.backcompat.backwards_compat_converters import (
    convert_env_vars,
)
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk.bases.decorator import DecoratedOperator, task_decorator_factory
from kubernetes.client import models as k8s

from pipelines.execution import PodSettings
from pipelines.pod_runtime import ENV_ARGS, ENV_CONTEXT, ENV_FUNCTION, ENV_SOURCE

POD_COMMAND = ("python", "-m", "pipelines.pod_runtime")
PAYLOAD_ENV = (ENV_FUNCTION, ENV_SOURCE, ENV_ARGS, ENV_CONTEXT)
ENV_BACKEND = "DRIFTLOOP_POD_BACKEND"
LAKE_VOLUME = "lake"
LAKE_SCRATCH_VOLUME = "lake-scratch"
TMP_VOLUME = "tmp"
CONTEXT_KEYS = ("run_id", "logical_date", "data_interval_start", "data_interval_end", "ds")


RUNTIME_NAMES = frozenset({"get_current_context", "Any"})  # defined by pipelines.pod_runtime


def function_source(func: Callable[..., Any]) -> str:
    """A function's own source without its decorators, ready to ``exec`` in the pod."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    node = tree.body[0]
    if not isinstance(node, ast.FunctionDef):
        raise TypeError(f"{func.__qualname__} is not a plain function; pods run plain functions")
    node.decorator_list = []
    return ast.unparse(node) + "\n"


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def shipped_source(func: Callable[..., Any]) -> str:
    """The task function plus what it uses from its DAG file, as one pod-runnable module.

    Helpers defined in the DAG file travel as source (recursively); modules and
    objects imported there become import lines (the pipeline image has the same
    packages). ``get_current_context`` is left to the pod runtime.
    """
    imports: list[str] = []
    helpers: list[str] = []
    seen: set[str] = set(RUNTIME_NAMES)

    def visit(function: Callable[..., Any]) -> None:
        for name in sorted(_global_names(function.__code__) - seen):
            if name not in function.__globals__:
                continue  # a builtin, an attribute name or a local import
            seen.add(name)
            value = function.__globals__[name]
            module = getattr(value, "__module__", None)
            qualname = getattr(value, "__qualname__", "")
            if inspect.ismodule(value):
                imports.append(f"import {value.__name__} as {name}")
            elif inspect.isfunction(value) and module == func.__module__:
                visit(value)
                helpers.append(function_source(value))
            elif module and module != func.__module__ and qualname and "." not in qualname:
                imports.append(f"from {module} import {qualname} as {name}")
            # anything else (a DAG-file constant) stays behind: a NameError in the pod says so

    visit(func)
    parts = ["\n".join(imports)] if imports else []
    return "\n\n".join([*parts, *helpers, function_source(func)])


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def task_context_payload(context: Any) -> dict[str, Any]:
    """What a task function may read from ``get_current_context()`` inside the pod."""
    if not context:
        return {"params": {}}
    payload: dict[str, Any] = {"params": dict(context.get("params") or {})}
    for key in CONTEXT_KEYS:
        if context.get(key) is not None:
            payload[key] = context[key]
    ti = context.get("ti")
    if ti is not None:
        payload.update(dag_id=ti.dag_id, task_id=ti.task_id, map_index=getattr(ti, "map_index", -1))
    return json.loads(json.dumps(payload, default=_jsonable))


class PodTaskOperator(DecoratedOperator, KubernetesPodOperator):
    """Run a TaskFlow function in its own pod (see the module docstring)."""

    # What Airflow's UI shows as the task's operator (graph node, task header):
    # the provider's operator it is, then the decorator that made it.
    custom_operator_name = "KubernetesPodOperator (@heavy_task)"
    template_fields: Sequence[str] = (
        "op_args",
        "op_kwargs",
        *(f for f in KubernetesPodOperator.template_fields if f not in ("cmds", "arguments")),
        "pod_spec",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"env_vars": "py", "pod_spec": "yaml"}
    shallow_copy_attrs: Sequence[str] = ("python_callable",)

    def __init__(self, *, kind: str, **kwargs: Any) -> None:
        self.kind = kind
        self.pod_spec = ""
        super().__init__(cmds=list(POD_COMMAND), **kwargs)

    def payload_env(self, context: Any) -> list[k8s.V1EnvVar]:
        arguments = {"args": list(self.op_args), "kwargs": dict(self.op_kwargs)}
        try:
            encoded_args = json.dumps(arguments)
        except TypeError as exc:
            raise TypeError(
                f"{self.task_id}: a pod task's arguments must be JSON (XCom values); {exc}"
            ) from exc
        return [
            k8s.V1EnvVar(name=ENV_FUNCTION, value=self.python_callable.__name__),
            k8s.V1EnvVar(name=ENV_SOURCE, value=shipped_source(self.python_callable)),
            k8s.V1EnvVar(name=ENV_ARGS, value=encoded_args),
            k8s.V1EnvVar(name=ENV_CONTEXT, value=json.dumps(task_context_payload(context))),
        ]

    def build_pod_request_obj(self, context: Any = None, *, dry_run: bool = False) -> k8s.V1Pod:
        """The provider's pod, with the function, its arguments and context attached."""
        base = [e for e in convert_env_vars(self.env_vars or []) if e.name not in PAYLOAD_ENV]
        self.env_vars = [*base, *self.payload_env(context)]
        return super().build_pod_request_obj(context, dry_run=dry_run)

    def _do_render_template_fields(
        self,
        parent: Any,
        template_fields: Any,
        context: Any,
        jinja_env: Any,
        seen_oids: set[int],
    ) -> None:
        """Also keep the pod this task instance submits as a rendered field (shown in the UI).

        Hooked here, not in ``render_template_fields``: a mapped task (``tune``)
        is rendered through this method on its unmapped operator.
        """
        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)
        if parent is self:
            self.pod_spec = pod_manifest_yaml(self.build_pod_request_obj(context, dry_run=True))

    def execute(self, context: Any) -> Any:
        if os.environ.get(ENV_BACKEND) == "docker":
            from pipelines.docker_pod import run_pod

            # No API server to ask whether we run in a cluster: the rest of the pod is identical.
            pod = self.build_pod_request_obj(context, dry_run=True)
            return run_pod(pod, log=self.log)
        return super().execute(context)


def pod_manifest(pod: k8s.V1Pod) -> dict[str, Any]:
    """The pod as the API server would receive it (camelCase keys, no nulls)."""
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(pod)


def pod_manifest_yaml(pod: k8s.V1Pod) -> str:
    import yaml

    return yaml.safe_dump(pod_manifest(pod), sort_keys=False)


def _restricted_container() -> k8s.V1SecurityContext:
    return k8s.V1SecurityContext(
        allow_privilege_escalation=False,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
    )


def pod_arguments(kind: str, settings: PodSettings) -> dict[str, Any]:
    """KubernetesPodOperator arguments for one task kind, from the pod config."""
    env = {**settings.env, **settings.kind_env.get(kind, {}), **settings.lake.env()}
    env.setdefault("DRIFTLOOP_HOME", settings.lake_mount_path)
    resources = settings.resources_for(kind)
    volumes = [k8s.V1Volume(name=TMP_VOLUME, empty_dir=k8s.V1EmptyDirVolumeSource())]
    mounts = [k8s.V1VolumeMount(name=TMP_VOLUME, mount_path="/tmp")]
    if settings.lake.mode == "s3":
        # The object-storage lake: a scratch copy at the lake's path, staged in and
        # out by pipelines.pod_runtime; no shared volume.
        volumes.append(
            k8s.V1Volume(name=LAKE_SCRATCH_VOLUME, empty_dir=k8s.V1EmptyDirVolumeSource())
        )
        mounts.append(
            k8s.V1VolumeMount(name=LAKE_SCRATCH_VOLUME, mount_path=settings.lake_mount_path)
        )
        if kind == "featurize":
            # Spark workers cannot see this pod's scratch lake: the executors run in the pod.
            env["SPARK_MASTER"] = "local[*]"
    elif settings.lake_claim:
        volumes.append(
            k8s.V1Volume(
                name=LAKE_VOLUME,
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                    claim_name=settings.lake_claim
                ),
            )
        )
        mounts.append(k8s.V1VolumeMount(name=LAKE_VOLUME, mount_path=settings.lake_mount_path))
    env_from = [
        *(
            k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name=name))
            for name in settings.config_maps
        ),
        *(
            k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=name))
            for name in settings.secrets
        ),
    ]
    runtime_env = []
    if kind == "featurize":
        # Client mode: Spark executors connect back to the driver in this pod by its IP.
        runtime_env.append(
            k8s.V1EnvVar(
                name="SPARK_LOCAL_IP",
                value_from=k8s.V1EnvVarSource(
                    field_ref=k8s.V1ObjectFieldSelector(field_path="status.podIP")
                ),
            )
        )
    uid = settings.run_as_user
    return {
        "kind": kind,
        "name": f"driftloop-{kind}",
        "namespace": settings.namespace,
        "image": settings.image,
        "image_pull_policy": settings.image_pull_policy,
        "service_account_name": settings.service_account,
        "automount_service_account_token": False,
        "labels": {"app.kubernetes.io/part-of": "driftloop", "driftloop.io/task-kind": kind},
        "env_vars": [k8s.V1EnvVar(name=k, value=v) for k, v in sorted(env.items())],
        "env_from": env_from,
        "pod_runtime_info_envs": runtime_env,
        "container_resources": k8s.V1ResourceRequirements(
            requests=dict(resources.get("requests") or {}),
            limits=dict(resources.get("limits") or {}),
        ),
        "volumes": volumes,
        "volume_mounts": mounts,
        "security_context": k8s.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=uid,
            run_as_group=uid,
            fs_group=uid,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        "container_security_context": _restricted_container(),
        # The sidecar too: the namespace enforces the "restricted" Pod Security Standard.
        "xcom_sidecar_container_security_context": _restricted_container(),
        "on_finish_action": "delete_succeeded_pod",
        "get_logs": True,
        "do_xcom_push": True,
        "startup_timeout_seconds": settings.startup_timeout_seconds,
        "log_events_on_failure": True,
    }


def pod_task(kind: str, settings: PodSettings, **task_kwargs: Any) -> Any:
    """A TaskFlow decorator whose tasks run as ``PodTaskOperator``."""

    def decorator(func: Callable[..., Any]) -> Any:
        return task_decorator_factory(
            python_callable=func,
            decorated_operator_class=PodTaskOperator,
            **pod_arguments(kind, settings),
            **task_kwargs,
        )

    return decorator
