"""Drive a server with `wrk` (a C load generator) and record what the generator itself cost.

`run_wrk(url, bodies, concurrency, duration)` runs `wrk` with one thread and
`concurrency` keep-alive connections; `bench/wrk_rotate.lua` sends a different
JSON body per request, cycling through the bodies file (one JSON body per
line). An unmeasured warm-up run comes first when `warmup` > 0. The result has
requests/s, p50/p90/p99/max latency in milliseconds, the errors wrk counts
(connect, read, write, timeouts, non-2xx/3xx answers) and the CPU seconds wrk
used (user + system, from the kernel's accounting of the child), so a report
can show how much of the machine's cores the load generator took from the
servers it measures. `wrk` is the Debian package (`apt-get install wrk`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

LUA_SCRIPT = Path(__file__).resolve().parent / "wrk_rotate.lua"


class WrkError(RuntimeError):
    """wrk is missing or did not produce its summary."""


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise WrkError("wrk is not installed: apt-get install wrk (Debian/Ubuntu package)")
    return found


def _run_measured(argv: list[str], timeout: float) -> tuple[str, str, int, float, float]:
    """Run argv; stdout, stderr, exit status, wall seconds, the child's own CPU seconds.

    The child is reaped with wait4, whose rusage is that child's alone (RUSAGE_CHILDREN would
    sum every child this process ever reaped).
    """
    started = time.monotonic()
    with (
        open(os.devnull, "rb") as stdin,
        _Capture() as out,
        _Capture() as err,
    ):
        process = subprocess.Popen(argv, stdin=stdin, stdout=out.handle, stderr=err.handle)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                os.wait4(process.pid, 0)
                raise WrkError(f"wrk did not finish within {timeout:.0f} s")
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        return out.text(), err.text(), process.returncode, wall, usage.ru_utime + usage.ru_stime


class _Capture:
    """A temporary file to hand a child as stdout/stderr, read back afterwards."""

    def __enter__(self) -> _Capture:
        self.handle = tempfile.TemporaryFile(mode="w+b")
        return self

    def text(self) -> str:
        self.handle.seek(0)
        return self.handle.read().decode(errors="replace")

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


def _summary(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{") and '"requests"' in line:
            return dict(json.loads(line))
    raise WrkError(f"wrk printed no summary line:\n{stdout[-2000:]}")


def run_wrk(
    url: str,
    bodies: Path,
    concurrency: int,
    duration: float,
    *,
    warmup: float = 0.0,
    timeout_seconds: float = 10.0,
) -> dict[str, Any]:
    """One measured wrk run (after an unmeasured warm-up run); figures as a dict."""
    wrk = wrk_path()

    def argv(seconds: float) -> list[str]:
        return [
            wrk,
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={max(1, round(timeout_seconds))}s",
            "-s",
            str(LUA_SCRIPT),
            url,
            "--",
            str(bodies),
        ]

    if warmup > 0:
        _run_measured(argv(warmup), timeout=warmup + 60)
    stdout, stderr, code, wall, cpu = _run_measured(argv(duration), timeout=duration + 60)
    if code != 0:
        raise WrkError(f"wrk exited with {code}: {stderr[-2000:]}")
    raw = _summary(stdout)
    seconds = raw["duration_us"] / 1e6
    errors = sum(
        int(raw[key])
        for key in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    return {
        "requests": int(raw["requests"]),
        "errors": errors,
        "error_kinds": {
            key: int(raw[key])
            for key in (
                "connect_errors",
                "read_errors",
                "write_errors",
                "status_errors",
                "timeouts",
            )
        },
        "seconds": round(seconds, 3),
        "rps": round(raw["requests"] / seconds, 1) if seconds > 0 else 0.0,
        "p50_ms": round(raw["p50_us"] / 1e3, 3),
        "p90_ms": round(raw["p90_us"] / 1e3, 3),
        "p99_ms": round(raw["p99_us"] / 1e3, 3),
        "max_ms": round(raw["max_us"] / 1e3, 3),
        "loadgen_cpu_seconds": round(cpu, 3),
        # Share of one core the generator used over its run (wall includes start and exit).
        "loadgen_cpu_share": round(cpu / wall, 3) if wall > 0 else None,
    }
