"""An S3-compatible server for the lake tests: ``moto_server`` (moto[server]) on loopback.

moto 5.2's answer to CompleteMultipartUpload is rejected by pyarrow's S3
client (getmoto/moto#10055), so the files these tests move stay below one
upload part (pyarrow sends them with a single PutObject).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail(f"{proc.args[0]} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def start_moto(log_path: Path) -> tuple[subprocess.Popen, str]:
    """``moto_server`` on a free loopback port; its endpoint URL once it answers."""
    binary = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    if not Path(binary).exists():
        pytest.fail("moto_server missing: install the dev requirements (make setup)")
    port = free_port()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
        )
    wait_for_port(port, proc, log_path, 30)
    return proc, f"http://127.0.0.1:{port}"


def make_bucket(endpoint: str) -> str:
    """A fresh bucket on the server at ``endpoint``."""
    from pyarrow import fs

    bucket = f"lake-{uuid.uuid4().hex[:10]}"
    fs.S3FileSystem(
        endpoint_override=endpoint.split("://")[1],
        scheme="http",
        region=CREDENTIALS["AWS_REGION"],
        access_key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        secret_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        allow_bucket_creation=True,
    ).create_dir(bucket)
    return bucket


def bucket_keys(filesystem, bucket: str, prefix: str) -> set[str]:
    """Every object under ``bucket/prefix``, relative to it."""
    from pyarrow import fs

    root = f"{bucket}/{prefix}".rstrip("/")
    infos = filesystem.get_file_info(fs.FileSelector(root, recursive=True, allow_not_found=True))
    return {i.path[len(root) + 1 :] for i in infos if i.type == fs.FileType.File}
