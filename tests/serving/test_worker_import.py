"""A server process imports the app with the cyclic GC paused, and only while importing."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import gc, json, sys
before = [s["collections"] for s in gc.get_stats()]
import {module}
after = [s["collections"] for s in gc.get_stats()]
print(json.dumps({{"collections": [a - b for a, b in zip(after, before)],
                  "enabled": gc.isenabled(), "modules": len(sys.modules)}}))
"""


def _import_in_fresh_process(module: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(module=module)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_worker_imports_the_app_without_garbage_collections() -> None:
    plain = _import_in_fresh_process("serving.app")
    paused = _import_in_fresh_process("serving.worker")

    assert sum(plain["collections"]) > 100  # type: ignore[arg-type]
    young, middle, full = paused["collections"]  # type: ignore[misc]
    assert full == 0 and young + middle < 10  # a few before the pause (the package itself)
    assert paused["enabled"] is True  # back on for serving
    assert abs(int(paused["modules"]) - int(plain["modules"])) <= 2  # type: ignore[call-overload]


def test_a_paused_collector_stays_paused() -> None:
    code = "import gc; gc.disable(); import serving.worker; print(gc.isenabled())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_the_worker_module_builds_the_same_app_factory() -> None:
    from serving.app import create_app
    from serving.worker import create_app as worker_create_app

    assert worker_create_app is create_app
