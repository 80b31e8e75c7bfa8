"""A small closed-loop HTTP/1.1 load generator, run as its own process.

`python -m bench.loadgen --url http://127.0.0.1:8000/predict --bodies bodies.jsonl
--concurrency 32 --duration 10` opens `concurrency` keep-alive connections;
each sends a POST, waits for the whole answer, and sends the next, cycling
through the bodies file (one JSON body per line, connection i starting at
line i). After `--warmup` seconds the latency of every request is recorded
until `--duration` seconds or `--max-requests` answers have passed. It prints
one JSON object: requests, errors (non-2xx answers and broken connections),
status counts, requests/s, and p50/p90/p99/max latency in milliseconds.

It speaks just enough HTTP/1.1 (Content-Length and chunked bodies) on raw
asyncio streams, with uvloop when installed: a general-purpose client such
as httpx spends several times more CPU per request, and on a small machine
the client would then measure itself rather than the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    connection_errors: int = 0
    recorded: int = 0


class HttpConnection:
    """One keep-alive connection that can POST and read a full answer."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None or self.reader is None:
            await self.open()
        assert self.writer is not None and self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = None
        chunked = False
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            value = value.strip()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and value.lower() == "close":
                close = True
        if chunked:
            body = await self._read_chunked()
        elif length is not None:
            body = await self.reader.readexactly(length)
        else:
            body = await self.reader.read()
            close = True
        if close:
            await self.close()
        return status, body

    async def _read_chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size_line = await self.reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)


def build_requests(url: str, bodies: list[bytes], headers: dict[str, str]) -> list[bytes]:
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return [
        (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
        ).encode("latin-1")
        + body
        for body in bodies
    ]


async def run_load(
    url: str,
    requests: list[bytes],
    concurrency: int,
    duration: float,
    warmup: float,
    max_requests: int,
) -> tuple[Tally, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    tally = Tally()
    loop = asyncio.get_running_loop()
    start = loop.time()
    record_from = start + warmup
    stop_at = record_from + duration
    measured_start: list[float] = []

    async def worker(index: int) -> None:
        connection = HttpConnection(host, port)
        position = index
        try:
            while True:
                now = loop.time()
                if now >= stop_at or tally.recorded >= max_requests:
                    return
                raw = requests[position % len(requests)]
                position += concurrency
                sent = time.perf_counter()
                try:
                    status, _ = await connection.request(raw)
                except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError):
                    await connection.close()
                    if loop.time() >= record_from:
                        tally.errors += 1
                        tally.connection_errors += 1
                    await asyncio.sleep(0.01)
                    continue
                elapsed = time.perf_counter() - sent
                if loop.time() < record_from:
                    continue
                if not measured_start:
                    measured_start.append(time.perf_counter() - elapsed)
                tally.recorded += 1
                tally.latencies.append(elapsed)
                tally.statuses[status] = tally.statuses.get(status, 0) + 1
                if not 200 <= status < 300:
                    tally.errors += 1
        finally:
            await connection.close()

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    finished = time.perf_counter()
    wall = finished - measured_start[0] if measured_start else 0.0
    return tally, wall


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summarise(tally: Tally, wall: float) -> dict[str, object]:
    ordered = sorted(tally.latencies)
    return {
        "requests": tally.recorded,
        "errors": tally.errors,
        "connection_errors": tally.connection_errors,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "seconds": round(wall, 3),
        "rps": round(tally.recorded / wall, 1) if wall > 0 else 0.0,
        "p50_ms": round(_percentile(ordered, 0.50) * 1e3, 3),
        "p90_ms": round(_percentile(ordered, 0.90) * 1e3, 3),
        "p99_ms": round(_percentile(ordered, 0.99) * 1e3, 3),
        "max_ms": round(ordered[-1] * 1e3, 3) if ordered else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", required=True, type=Path, help="one JSON body per line")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--header", action="append", default=[], help="Name: value")
    args = parser.parse_args(argv)

    bodies = [line for line in args.bodies.read_bytes().splitlines() if line.strip()]
    if not bodies:
        parser.error(f"{args.bodies} holds no request bodies")
    headers = dict(h.split(":", 1) for h in args.header)
    requests = build_requests(args.url, bodies, {k.strip(): v.strip() for k, v in headers.items()})
    load = run_load(
        args.url, requests, args.concurrency, args.duration, args.warmup, args.max_requests
    )
    try:
        import uvloop
    except ImportError:
        tally, wall = asyncio.run(load)
    else:
        tally, wall = uvloop.run(load)
    json.dump(summarise(tally, wall), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
