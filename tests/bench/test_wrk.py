"""bench.wrk: wrk sends a different body per request and its own CPU use is recorded."""

from __future__ import annotations

import json
import shutil
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from bench.wrk import run_wrk

pytestmark = pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk not installed (apt-get install wrk)"
)


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[Counter[str]] = Counter()
    lock: ClassVar[threading.Lock] = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        item = json.loads(body)["text"]
        with self.lock:
            self.seen[item] += 1
        status = 500 if item == "fail" else 200
        answer = b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> object:
    _Recorder.seen = Counter()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _bodies(tmp_path: Path, texts: list[str]) -> Path:
    path = tmp_path / "bodies.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def test_every_body_is_sent_in_turn_and_figures_are_reported(server, tmp_path: Path) -> None:
    texts = [f'review {i} with "quotes" and caf\u00e9' for i in range(5)]
    url = f"http://127.0.0.1:{server.server_address[1]}/predict"
    result = run_wrk(url, _bodies(tmp_path, texts), concurrency=2, duration=1)
    seen = _Recorder.seen
    assert set(seen) == set(texts)
    # Rotation: each body is sent about as often as any other (a fixed body would be 100 %).
    assert max(seen.values()) - min(seen.values()) <= 2
    assert result["requests"] > 0 and result["errors"] == 0
    assert result["rps"] > 0 and 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["loadgen_cpu_seconds"] > 0
    assert 0 < result["loadgen_cpu_share"] <= 1.5


def test_non_2xx_answers_count_as_errors(server, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}/predict"
    result = run_wrk(url, _bodies(tmp_path, ["ok", "fail"]), concurrency=1, duration=1)
    assert result["error_kinds"]["status_errors"] > 0
    assert result["errors"] >= result["error_kinds"]["status_errors"]
