"""Where the lake lives: a shared volume, or object storage staged around each task.

The lake (``DRIFTLOOP_HOME``: snapshots, quarantines, features, reports) is
addressed by local paths: tasks hand each other absolute paths inside it. Two
ways to share it between the Airflow workers and the task pods, chosen per
deployment:

- ``volume`` (the default): every process mounts the same ReadWriteMany
  volume at the same path. Nothing to do here.
- ``s3``: the lake lives under an S3 URL (``s3://bucket/prefix``, any
  S3-compatible server). Each task works on a local copy at the same path:
  before it runs, the lake paths it names (in its arguments and its run's
  Params, plus the folders of ``DRIFTLOOP_LAKE_STAGE``) are downloaded; after
  it succeeds, every file it added or changed under the lake is uploaded, and
  every downloaded file it removed is deleted from the bucket. A failed task
  uploads nothing. The task functions never see the object store, except
  through ``ensure_local`` for a path they learn along the way.

Settings (environment first, then the ``lake`` section of the pod config
``pipelines/config/kubernetes.yaml`` or ``DRIFTLOOP_K8S_CONFIG``):

- ``DRIFTLOOP_LAKE``: ``volume`` or ``s3`` (config key ``store``);
- ``DRIFTLOOP_LAKE_URL``: ``s3://bucket/prefix`` (config key ``url``);
- ``DRIFTLOOP_LAKE_ENDPOINT``: ``http(s)://host:port`` of an S3-compatible
  server; empty means AWS itself (config key ``endpoint``);
- ``DRIFTLOOP_LAKE_STAGE``: comma-separated folders under the lake that every
  task stages in whatever it names (config key ``stage``, default ``landing``:
  drift_check reads the landing folder without naming it).

Credentials and region come the AWS SDK's usual way (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` or
``AWS_DEFAULT_REGION``, or the pod's cloud identity). pyarrow's
``S3FileSystem`` (already in the pipeline image) does the transfers.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)

MODES = ("volume", "s3")
ENV_LAKE = "DRIFTLOOP_LAKE"
ENV_URL = "DRIFTLOOP_LAKE_URL"
ENV_ENDPOINT = "DRIFTLOOP_LAKE_ENDPOINT"
ENV_STAGE = "DRIFTLOOP_LAKE_STAGE"
DEFAULT_STAGE = ("landing",)
DEFAULT_REGION = "us-east-1"


class LakeConfigError(ValueError):
    """The lake settings are not usable; the message says which one to fix."""


@dataclass(frozen=True)
class LakeSettings:
    mode: str = "volume"
    url: str = ""
    endpoint: str = ""
    stage: tuple[str, ...] = DEFAULT_STAGE

    @property
    def bucket(self) -> str:
        return urlparse(self.url).netloc

    @property
    def prefix(self) -> str:
        return urlparse(self.url).path.strip("/")

    def env(self) -> dict[str, str]:
        """The settings as the environment variables a task pod carries."""
        values = {ENV_LAKE: self.mode}
        if self.mode == "s3":
            values |= {ENV_URL: self.url, ENV_STAGE: ",".join(self.stage)}
            if self.endpoint:
                values[ENV_ENDPOINT] = self.endpoint
        return values


def _split(raw: str | Iterable[str] | None) -> tuple[str, ...]:
    items = raw.split(",") if isinstance(raw, str) else list(raw or [])
    return tuple(str(item).strip().strip("/") for item in items if str(item).strip().strip("/"))


def make_settings(
    mode: str | None,
    url: str | None = None,
    endpoint: str | None = None,
    stage: str | Iterable[str] | None = None,
    source: str = "lake settings",
) -> LakeSettings:
    """Checked settings; a bad value raises ``LakeConfigError`` naming it."""
    chosen = (mode or "volume").strip().lower()
    if chosen not in MODES:
        raise LakeConfigError(f"{source}: {ENV_LAKE} is {mode!r}; use one of {', '.join(MODES)}")
    if chosen == "volume":
        return LakeSettings()
    parsed = urlparse((url or "").strip())
    if parsed.scheme != "s3" or not parsed.netloc:
        raise LakeConfigError(
            f"{source}: {ENV_LAKE}=s3 needs {ENV_URL}=s3://bucket/prefix, got {url!r}"
        )
    endpoint = (endpoint or "").strip()
    if endpoint and urlparse(endpoint).scheme not in ("http", "https"):
        raise LakeConfigError(
            f"{source}: {ENV_ENDPOINT} must be http(s)://host:port, got {endpoint!r}"
        )
    staged = DEFAULT_STAGE if stage is None else _split(stage)
    return LakeSettings("s3", url.strip() if url else "", endpoint, staged)


def lake_settings(
    config: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> LakeSettings:
    """The lake settings: the environment wins over the config's ``lake`` section."""
    env = os.environ if env is None else env
    if config is None:
        config = _config_lake_section()
    stage = env.get(ENV_STAGE)
    return make_settings(
        env.get(ENV_LAKE) or config.get("store"),
        env.get(ENV_URL) or config.get("url"),
        env.get(ENV_ENDPOINT) or config.get("endpoint"),
        stage if stage is not None else config.get("stage"),
        source="environment / pod config",
    )


def _config_lake_section() -> Mapping[str, Any]:
    import yaml

    from pipelines.execution import DEFAULT_CONFIG, ENV_CONFIG

    path = Path(os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG)
    if not path.is_file():
        return {}
    return (yaml.safe_load(path.read_text()) or {}).get("lake") or {}


def s3_filesystem(settings: LakeSettings) -> Any:
    """pyarrow's S3 client for the settings (credentials from the AWS environment)."""
    from pyarrow import fs

    # Without credentials in the environment the SDK would ask the EC2 metadata
    # service: unreachable off AWS, and slow to time out.
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    # Delayed open: a file smaller than one part goes up in a single PutObject.
    kwargs: dict[str, Any] = {"region": region or DEFAULT_REGION, "allow_delayed_open": True}
    if settings.endpoint:
        parsed = urlparse(settings.endpoint)
        kwargs |= {"endpoint_override": parsed.netloc, "scheme": parsed.scheme}
    return fs.S3FileSystem(**kwargs)


def path_strings(value: Any) -> Iterator[str]:
    """Every string inside nested dicts, lists and tuples."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from path_strings(item)
    elif isinstance(value, list | tuple | set):
        for item in value:
            yield from path_strings(item)


class ObjectLake:
    """The lake under ``home`` mirrored to ``settings.url``, path for key."""

    def __init__(self, settings: LakeSettings, home: Path, filesystem: Any = None) -> None:
        if settings.mode != "s3":
            raise LakeConfigError("ObjectLake needs DRIFTLOOP_LAKE=s3")
        self.settings = settings
        self.home = Path(os.path.normpath(os.path.abspath(home)))
        self.fs = filesystem if filesystem is not None else s3_filesystem(settings)
        self.staged: set[str] = set()
        self.fetched: dict[str, tuple[int, int]] = {}

    def key(self, relative: str) -> str:
        parts = [self.settings.bucket, self.settings.prefix, relative]
        return "/".join(p.strip("/") for p in parts if p.strip("/"))

    def relative(self, value: str) -> str | None:
        """``value`` as a path relative to the lake, or None if it is not inside it."""
        if not value.startswith("/") or "\n" in value:
            return None
        path = Path(os.path.normpath(value))
        if path == self.home or not path.is_relative_to(self.home):
            return None
        return path.relative_to(self.home).as_posix()

    def named_paths(self, values: Any) -> list[str]:
        """Lake paths (relative) named by ``values`` plus the always-staged folders, outermost only."""
        found = {rel for s in path_strings(values) if (rel := self.relative(s))}
        found |= set(self.settings.stage)
        ordered = sorted(found)
        return [
            rel
            for rel in ordered
            if not any(rel.startswith(other + "/") for other in ordered if other != rel)
        ]

    def download(self, relative: str) -> int:
        """Copy the object or the folder at ``relative`` to the local lake; the files copied."""
        from pyarrow import fs

        key = self.key(relative)
        info = self.fs.get_file_info(key)
        if info.type == fs.FileType.File:
            infos = [info]
        elif info.type == fs.FileType.Directory:
            infos = self.fs.get_file_info(fs.FileSelector(key, recursive=True))
        else:
            return 0  # not in the bucket (yet): an output the task is to write
        root = self.key("")
        count = 0
        for item in infos:
            if item.type != fs.FileType.File:
                continue
            rel = item.path[len(root) :].lstrip("/") if root else item.path
            target = self.home / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with self.fs.open_input_stream(item.path) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 20)
            self.staged.add(rel)
            count += 1
        return count

    def fetch(self, relative: str) -> int:
        """Download ``relative`` while the task runs; the copies do not count as its writes."""
        count = self.download(relative)
        now = self.snapshot()
        self.fetched |= {
            rel: state
            for rel, state in now.items()
            if rel == relative or rel.startswith(relative + "/")
        }
        return count

    def stage_in(self, values: Any) -> dict[str, int]:
        """Download every lake path ``values`` names; files copied per path."""
        return {rel: self.download(rel) for rel in self.named_paths(values)}

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """Size and modification time of every file under the local lake."""
        found: dict[str, tuple[int, int]] = {}
        if not self.home.is_dir():
            return found
        for folder, _, files in os.walk(self.home):
            for name in files:
                path = Path(folder, name)
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                found[path.relative_to(self.home).as_posix()] = (stat.st_size, stat.st_mtime_ns)
        return found

    def stage_out(self, before: Mapping[str, tuple[int, int]]) -> tuple[list[str], list[str]]:
        """Upload files added or changed since ``before``; delete staged files that are gone."""
        after = self.snapshot()
        known = {**before, **self.fetched}
        uploaded = sorted(rel for rel, state in after.items() if known.get(rel) != state)
        for rel in uploaded:
            with (
                open(self.home / rel, "rb") as src,
                self.fs.open_output_stream(self.key(rel), metadata={}) as dst,
            ):
                shutil.copyfileobj(src, dst, length=1 << 20)
        deleted = sorted(rel for rel in self.staged & set(before) if rel not in after)
        for rel in deleted:
            self.fs.delete_file(self.key(rel))
        return uploaded, deleted


_ACTIVE: list[ObjectLake] = []  # the lake of the task running in this process, if staged


def ensure_local(path: str | Path) -> bool:
    """Make sure a lake path a task found indirectly (not in its inputs) is on local disk.

    For code that reads a lake path it learnt along the way (from an MLflow tag,
    say): with the S3 lake the file or folder is downloaded if it is not here
    yet; with the volume lake, or outside the lake, nothing happens. True when
    the path exists locally afterwards.
    """
    local = Path(path)
    if local.exists():
        return True
    settings = lake_settings()
    if settings.mode != "s3":
        return False
    if _ACTIVE:
        lake = _ACTIVE[-1]
    else:
        from core.settings import get_settings

        lake = ObjectLake(settings, get_settings().home)
    relative = lake.relative(str(local))
    if relative is None:
        return False
    count = lake.fetch(relative)
    log.info("lake %s: fetched %d files of %s", settings.url, count, relative)
    return local.exists()


@contextmanager
def staged(
    values: Any,
    settings: LakeSettings | None = None,
    home: Path | None = None,
    filesystem: Any = None,
) -> Iterator[ObjectLake | None]:
    """Around one task: stage in what ``values`` name, upload the task's writes if it succeeds.

    With the volume lake this does nothing (yields None).
    """
    settings = settings or lake_settings()
    if settings.mode != "s3":
        yield None
        return
    if home is None:
        from core.settings import get_settings

        home = get_settings().home
    lake = ObjectLake(settings, home, filesystem)
    lake.home.mkdir(parents=True, exist_ok=True)
    counts = lake.stage_in(values)
    log.info(
        "lake %s: staged in %d files from %s",
        settings.url,
        sum(counts.values()),
        ", ".join(f"{rel} ({n})" for rel, n in counts.items()) or "nothing",
    )
    before = lake.snapshot()
    _ACTIVE.append(lake)
    try:
        yield lake
    finally:
        _ACTIVE.remove(lake)
    uploaded, deleted = lake.stage_out(before)
    log.info(
        "lake %s: uploaded %d files, deleted %d: %s",
        settings.url,
        len(uploaded),
        len(deleted),
        ", ".join(sorted({rel.split("/")[0] for rel in uploaded + deleted})) or "-",
    )


def staged_task(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` run inside ``staged`` (its arguments and its run's Params name the paths).

    For the tasks the Airflow worker runs itself; the lake mode is read when the
    task runs, so one DAG file serves both lakes.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        settings = lake_settings()
        if settings.mode != "s3":
            return func(*args, **kwargs)
        from airflow.sdk import get_current_context

        params = dict(get_current_context().get("params") or {})
        with staged([args, kwargs, params], settings):
            return func(*args, **kwargs)

    return wrapper
