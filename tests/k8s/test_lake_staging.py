"""The object-storage lake (pipelines.lake) against a real S3-compatible server.

``moto_server`` (moto[server], a dev requirement) listens on 127.0.0.1 for the
module; every test gets its own bucket. Files really travel through the S3
API: a test fails if a file is not downloaded before the task or not uploaded
after it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.lake import (
    LakeConfigError,
    LakeSettings,
    lake_settings,
    make_settings,
    s3_filesystem,
    staged,
)
from tests.k8s.podspecs import REPO_ROOT
from tests.k8s.s3server import CREDENTIALS, bucket_keys, make_bucket, start_moto


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, endpoint = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture()
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> tuple[LakeSettings, object]:
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    bucket = make_bucket(moto_endpoint)
    settings = make_settings("s3", f"s3://{bucket}/team/lake", moto_endpoint, stage=["landing"])
    return settings, s3_filesystem(settings)


def put(filesystem, key: str, data: bytes) -> None:
    with filesystem.open_output_stream(key) as out:
        out.write(data)


def get(filesystem, key: str) -> bytes:
    with filesystem.open_input_stream(key) as src:
        return src.read()


def keys(filesystem, settings: LakeSettings) -> set[str]:
    return bucket_keys(filesystem, settings.bucket, settings.prefix)


def _run_pod_runtime(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The pod entry point as a task pod runs it, in a child process with `env`."""
    return subprocess.run(
        [sys.executable, "-m", "pipelines.pod_runtime"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_settings_are_checked() -> None:
    assert make_settings(None) == LakeSettings()
    assert make_settings("VOLUME").mode == "volume"
    with pytest.raises(LakeConfigError, match="one of volume, s3"):
        make_settings("nfs")
    with pytest.raises(LakeConfigError, match="DRIFTLOOP_LAKE_URL=s3://bucket/prefix"):
        make_settings("s3", "")
    with pytest.raises(LakeConfigError, match="DRIFTLOOP_LAKE_URL"):
        make_settings("s3", "gs://bucket/x")
    with pytest.raises(LakeConfigError, match="http"):
        make_settings("s3", "s3://b/p", "minio:9000")
    settings = make_settings("s3", "s3://b/some/prefix/", "http://h:9000", "landing, inbox/")
    assert (settings.bucket, settings.prefix, settings.stage) == (
        "b",
        "some/prefix",
        ("landing", "inbox"),
    )
    assert settings.env() == {
        "DRIFTLOOP_LAKE": "s3",
        "DRIFTLOOP_LAKE_URL": "s3://b/some/prefix/",
        "DRIFTLOOP_LAKE_ENDPOINT": "http://h:9000",
        "DRIFTLOOP_LAKE_STAGE": "landing,inbox",
    }


def test_environment_wins_over_the_config() -> None:
    config = {"store": "s3", "url": "s3://from-config/x", "endpoint": "", "stage": ["landing"]}
    assert lake_settings(config, env={}).url == "s3://from-config/x"
    assert lake_settings(config, env={"DRIFTLOOP_LAKE": "volume"}).mode == "volume"
    chosen = lake_settings(
        {"store": "volume"},
        env={
            "DRIFTLOOP_LAKE": "s3",
            "DRIFTLOOP_LAKE_URL": "s3://env/y",
            "DRIFTLOOP_LAKE_STAGE": "",
        },
    )
    assert (chosen.mode, chosen.bucket, chosen.stage) == ("s3", "env", ())


def test_volume_lake_stages_nothing(tmp_path: Path) -> None:
    with staged({"path": str(tmp_path / "x")}, LakeSettings(), tmp_path) as lake:
        assert lake is None


def test_named_paths_are_downloaded_and_writes_uploaded(s3, tmp_path: Path) -> None:
    settings, filesystem = s3
    root = f"{settings.bucket}/{settings.prefix}"
    put(filesystem, f"{root}/lake/runs/r1/accepted.parquet", b"accepted")
    put(filesystem, f"{root}/lake/runs/r1/spark/features/part-0.parquet", b"part0")
    put(filesystem, f"{root}/lake/runs/r1/spark/features/part-1.parquet", b"part1")
    put(filesystem, f"{root}/lake/runs/other/big.parquet", b"not named")
    put(filesystem, f"{root}/landing/reviews/new.csv", b"landed")
    home = tmp_path / "home"
    run_dir = home / "lake" / "runs" / "r1"
    arguments = {
        "features_dir": str(run_dir / "spark" / "features"),
        "accepted_path": str(run_dir / "accepted.parquet"),
        "output": str(run_dir / "model"),  # not in the bucket: the task writes it
        "elsewhere": "/usr/share/doc",  # outside the lake: ignored
        "note": "features of run r1",
    }
    with staged([arguments], settings, home, filesystem) as lake:
        assert lake is not None
        assert (run_dir / "accepted.parquet").read_bytes() == b"accepted"
        assert (run_dir / "spark" / "features" / "part-1.parquet").read_bytes() == b"part1"
        assert (home / "landing" / "reviews" / "new.csv").read_bytes() == b"landed"
        assert not (home / "lake" / "runs" / "other").exists()
        (run_dir / "model").mkdir()
        (run_dir / "model" / "weights.bin").write_bytes(b"weights")
        (run_dir / "accepted.parquet").write_bytes(b"rewritten")
        (run_dir / "spark" / "features" / "part-0.parquet").unlink()
    assert get(filesystem, f"{root}/lake/runs/r1/model/weights.bin") == b"weights"
    assert get(filesystem, f"{root}/lake/runs/r1/accepted.parquet") == b"rewritten"
    assert keys(filesystem, settings) == {
        "lake/runs/r1/accepted.parquet",
        "lake/runs/r1/model/weights.bin",
        "lake/runs/r1/spark/features/part-1.parquet",
        "lake/runs/other/big.parquet",
        "landing/reviews/new.csv",
    }


def test_only_changed_files_are_uploaded(s3, tmp_path: Path) -> None:
    settings, filesystem = s3
    home = tmp_path / "home"
    (home / "lake").mkdir(parents=True)
    (home / "lake" / "kept.txt").write_text("local only, older than the task")
    with staged([], settings, home, filesystem):
        (home / "lake" / "new.txt").write_text("new")
    assert keys(filesystem, settings) == {"lake/new.txt"}


def test_a_failing_task_uploads_nothing(s3, tmp_path: Path) -> None:
    settings, filesystem = s3
    home = tmp_path / "home"
    with pytest.raises(RuntimeError, match="task failed"), staged([], settings, home, filesystem):
        (home / "lake").mkdir(parents=True)
        (home / "lake" / "half-written.parquet").write_bytes(b"x")
        raise RuntimeError("task failed")
    assert keys(filesystem, settings) == set()


def test_pod_runtime_stages_around_the_shipped_function(s3, tmp_path: Path) -> None:
    """``python -m pipelines.pod_runtime`` with DRIFTLOOP_LAKE=s3: input from, output to the bucket."""
    settings, filesystem = s3
    root = f"{settings.bucket}/{settings.prefix}"
    put(filesystem, f"{root}/lake/runs/r2/input.txt", b"3,4")
    home = tmp_path / "scratch-lake"  # empty, as a fresh pod's scratch folder
    source = (
        "def add(spec):\n"
        "    from pathlib import Path\n"
        "    a, b = Path(spec['input']).read_text().split(',')\n"
        "    out = Path(spec['run_dir']) / 'sum.txt'\n"
        "    out.write_text(str(int(a) + int(b)))\n"
        "    return {'sum_path': str(out)}\n"
    )
    run_dir = home / "lake" / "runs" / "r2"
    env = {
        **os.environ,
        **CREDENTIALS,
        **settings.env(),
        "DRIFTLOOP_HOME": str(home),
        "DRIFTLOOP_TASK_FUNCTION": "add",
        "DRIFTLOOP_TASK_SOURCE": source,
        "DRIFTLOOP_TASK_ARGS": json.dumps(
            {"args": [{"input": str(run_dir / "input.txt"), "run_dir": str(run_dir)}]}
        ),
        "DRIFTLOOP_TASK_CONTEXT": json.dumps({"params": {}, "run_id": "r2"}),
        "DRIFTLOOP_XCOM_PATH": str(tmp_path / "return.json"),
    }
    done = _run_pod_runtime(env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((tmp_path / "return.json").read_text()) == {
        "sum_path": str(run_dir / "sum.txt")
    }
    assert get(filesystem, f"{root}/lake/runs/r2/sum.txt") == b"7"
    assert "staged in 1 files" in done.stdout


def test_pod_runtime_without_lake_url_fails_clearly(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DRIFTLOOP_LAKE": "s3",
        "DRIFTLOOP_LAKE_URL": "",
        "DRIFTLOOP_TASK_FUNCTION": "f",
        "DRIFTLOOP_TASK_SOURCE": "def f():\n    return 1\n",
        "DRIFTLOOP_TASK_ARGS": "{}",
        "DRIFTLOOP_XCOM_PATH": str(tmp_path / "return.json"),
    }
    done = _run_pod_runtime(env)
    assert done.returncode != 0
    assert "DRIFTLOOP_LAKE_URL=s3://bucket/prefix" in done.stderr
    assert not (tmp_path / "return.json").exists()


def test_ensure_local_fetches_a_path_found_along_the_way(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A lake path no input named (an older run's folder, from an MLflow tag) comes down on demand."""
    from pipelines.lake import ensure_local

    settings, filesystem = s3
    root = f"{settings.bucket}/{settings.prefix}"
    put(filesystem, f"{root}/lake/runs/old/manifest.json", b'{"data_sha256": "x"}')
    put(filesystem, f"{root}/lake/runs/old/snapshots/a.csv", b"a,b")
    home = tmp_path / "home"
    for key, value in {**settings.env(), "DRIFTLOOP_HOME": str(home)}.items():
        monkeypatch.setenv(key, value)
    old_run = home / "lake" / "runs" / "old"
    assert not ensure_local(home / "lake" / "runs" / "never")
    assert not ensure_local("/usr/share/no-such-folder")
    caplog.set_level("INFO", logger="pipelines.lake")
    with staged([], settings, home, filesystem):
        assert ensure_local(old_run)
        assert (old_run / "snapshots" / "a.csv").read_bytes() == b"a,b"
        (home / "lake" / "runs" / "new.json").write_text("{}")
    # the fetched copies are not the task's writes: only its own file went up
    assert "uploaded 1 files" in caplog.text
    assert "lake/runs/new.json" in keys(filesystem, settings)
    # outside a staged task too (a plain call with the S3 lake configured)
    shutil.rmtree(old_run)
    assert ensure_local(old_run / "manifest.json")
    assert (old_run / "manifest.json").read_bytes() == b'{"data_sha256": "x"}'
