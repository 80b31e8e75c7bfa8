"""`make demo` predicts only once the API serves the champion the run left, and says which."""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "local"))

import stack


class _SlowReloadingApi(BaseHTTPRequestHandler):
    """/model-info reports v1 for the first few polls, then v2 (an alias poll catching up)."""

    polls = 0

    def do_GET(self) -> None:
        type(self).polls += 1
        version = "1" if type(self).polls < 4 else "2"
        body = json.dumps({"name": "review-sentiment", "version": version}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    _SlowReloadingApi.polls = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowReloadingApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(stack, "API_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.delenv("DRIFTLOOP_ADMIN_API_KEY", raising=False)
    try:
        yield
    finally:
        server.shutdown()


def test_waits_until_the_api_reports_the_new_champion(api: None) -> None:
    info = stack.wait_serving("2", timeout=30)
    assert info["version"] == "2"
    assert _SlowReloadingApi.polls >= 4


def test_gives_up_naming_both_versions(api: None) -> None:
    with pytest.raises(stack.StackError, match=r"still serves v\d .* became v7"):
        stack.wait_serving("7", timeout=2)


def test_says_whether_the_gate_promoted_or_kept() -> None:
    promoted = {
        "version": "3",
        "promoted": True,
        "champion_version": "3",
        "decision": {"reason": "roc_auc 0.95 vs champion 0.93"},
    }
    assert stack.describe_gate("m", promoted) == (
        "3",
        "the gate promoted m v3 to champion (roc_auc 0.95 vs champion 0.93)",
    )
    kept = {**promoted, "promoted": False, "champion_version": "2"}
    champion, sentence = stack.describe_gate("m", kept)
    assert champion == "2"
    assert sentence.startswith("the gate kept the champion m v2; the new v3 stays challenger")


def test_never_adopts_a_service_it_did_not_start(tmp_path: Path, monkeypatch) -> None:
    """A port already answering (another stack, a container) is an error, not 'healthy'."""
    monkeypatch.setattr(stack, "HOME", tmp_path)
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        url = f"http://127.0.0.1:{other.getsockname()[1]}/health"
        service = stack.Service("api", ["true"], url, signal.SIGTERM, 5)
        with pytest.raises(stack.StackError, match="already taken by a process this stack"):
            stack.start(service, {})
    assert not service.pid_file.exists()
