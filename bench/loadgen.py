"""A lean HTTP/1.1 load generator (asyncio streams, keep-alive, pre-built requests).

Why not httpx: on a 2-core machine the client competes with the server for CPU, and
httpx spends more per request than the endpoints under test. Pre-serialised requests
over a few keep-alive connections keep the client's share small and equal for the
baseline and the hub, so the ratio between them is fair.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class LoadResult:
    requests: int
    seconds: float
    statuses: dict[int, int]
    latencies_ms: list[float]

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def build_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None,
                  method: str = "POST") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", "Connection: keep-alive"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v.strip())
        elif k == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def _worker(host: str, port: int, requests: Sequence[bytes], result: LoadResult) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for req in requests:
            t0 = time.perf_counter()
            writer.write(req)
            status = await _read_response(reader)
            result.latencies_ms.append((time.perf_counter() - t0) * 1000)
            result.statuses[status] = result.statuses.get(status, 0) + 1
    finally:
        writer.close()


async def run_load(host: str, port: int, requests: Sequence[bytes], connections: int = 8) -> LoadResult:
    result = LoadResult(len(requests), 0.0, {}, [])
    shards = [requests[i::connections] for i in range(connections)]
    t0 = time.perf_counter()
    await asyncio.gather(*(_worker(host, port, s, result) for s in shards if s))
    result.seconds = time.perf_counter() - t0
    return result


def load(host: str, port: int, requests: Sequence[bytes], connections: int = 8) -> LoadResult:
    return asyncio.run(run_load(host, port, requests, connections))
