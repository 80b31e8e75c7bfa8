"""Where the Prometheus tools are, and a skip that says how to get them."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
ALERTMANAGER_CONFIG = REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
RUNBOOK = REPO_ROOT / "docs" / "runbook.md"

INSTALL_HINT = (
    "apt-get install prometheus prometheus-pushgateway prometheus-alertmanager "
    "(.ci/run installs them when missing)"
)


def require(*names: str) -> dict[str, str]:
    """Paths of the named binaries, or skip the test saying which are missing."""
    found = {name: shutil.which(name) for name in names}
    missing = sorted(name for name, path in found.items() if path is None)
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: {INSTALL_HINT}")
    return {name: str(path) for name, path in found.items()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll `check` until it holds; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@contextmanager
def running(
    command: list[str], ready_url: str, log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` until the block ends; ready when `ready_url` answers 200."""
    log = log_path.open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(
                    f"{command[0]} exited {process.returncode}: {log_path.read_text()[-2000:]}"
                )
            return bool(http_get(ready_url, timeout=2) is not None)

        wait_until(ready, f"{command[0]} at {ready_url}")
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


@contextmanager
def pushgateway(workdir: Path) -> Iterator[str]:
    """A real Pushgateway on a spare loopback port; yields its URL."""
    binary = require("prometheus-pushgateway")["prometheus-pushgateway"]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        binary,
        f"--web.listen-address=127.0.0.1:{port}",
        f"--persistence.file={workdir / 'pushgateway.data'}",
    ]
    with running(command, f"{url}/-/ready", workdir / "pushgateway.log"):
        yield url


def load_dashboards_module() -> ModuleType:
    """deploy/grafana/dashboards.py (a script, not a package module) loaded by path."""
    path = REPO_ROOT / "deploy" / "grafana" / "dashboards.py"
    spec = importlib.util.spec_from_file_location("driftloop_grafana_dashboards", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
