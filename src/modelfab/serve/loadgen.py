"""A small closed-loop HTTP/1.1 load generator for loopback servers, run as its own process.

`concurrency` keep-alive connections each send the same POST body, wait for the answer, send
again. Bounded twice: at most `requests` requests and `duration_s` seconds; warm-up requests are
sent first and not counted. Raw asyncio streams (uvloop when installed) keep the generator's own
CPU cost per request small, so on a shared 2-core machine most of the CPU goes to the server.

    python -m modelfab.serve.loadgen --url http://127.0.0.1:8080/v2/models/m/infer \\
        --body-file body.json --concurrency 32 --requests 20000 --duration-s 10
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _request_bytes(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode("ascii") + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def run_load(
    url: str,
    body: bytes,
    *,
    concurrency: int,
    requests: int,
    duration_s: float,
    warmup: int = 0,
) -> dict:
    parts = urlsplit(url)
    if parts.hostname not in LOOPBACK_HOSTS:
        raise SystemExit(f"loadgen only targets loopback, not {parts.hostname}")
    host, port = parts.hostname, parts.port or 80
    payload = _request_bytes(host, port, parts.path, body)
    latencies: list[float] = []
    codes: dict[int, int] = {}
    failures = 0
    budget = {"left": warmup + requests}
    counted_from = {"n": warmup}
    deadline = {"t": float("inf")}
    started = {"t": 0.0}

    async def worker() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while budget["left"] > 0 and time.perf_counter() < deadline["t"]:
                budget["left"] -= 1
                t0 = time.perf_counter()
                try:
                    writer.write(payload)
                    status = await _read_response(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    failures += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                elapsed = time.perf_counter() - t0
                if counted_from["n"] > 0:  # still warming up
                    counted_from["n"] -= 1
                    if counted_from["n"] == 0:
                        started["t"] = time.perf_counter()
                        deadline["t"] = started["t"] + duration_s
                    continue
                latencies.append(elapsed)
                codes[status] = codes.get(status, 0) + 1
        finally:
            writer.close()

    if warmup == 0:
        started["t"] = time.perf_counter()
        deadline["t"] = started["t"] + duration_s
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started["t"]
    lat = np.array(latencies) * 1000 if latencies else np.zeros(1)
    ok = codes.get(200, 0)
    return {
        "requests": len(latencies),
        "seconds": wall,
        "rps": len(latencies) / wall if wall > 0 else 0.0,
        "p50_ms": float(np.percentile(lat, 50)),
        "p90_ms": float(np.percentile(lat, 90)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
        "errors": len(latencies) - ok + failures,
        "codes": {str(k): v for k, v in sorted(codes.items())},
        "concurrency": concurrency,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--warmup", type=int, default=500)
    args = parser.parse_args(argv)
    gc.freeze()  # the generator's own collections must not show up as server latency
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(
            run_load(
                args.url,
                args.body_file.read_bytes(),
                concurrency=args.concurrency,
                requests=args.requests,
                duration_s=args.duration_s,
                warmup=args.warmup,
            )
        )
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
