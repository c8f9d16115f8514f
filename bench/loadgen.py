"""A lean HTTP/1.1 load generator (asyncio streams, keep-alive, pre-built requests).

Why not httpx: on a 2-core machine the client competes with the server for CPU, and
httpx spends more per request than the endpoints under test. Pre-serialised requests
over a few keep-alive connections keep the client's share small and equal for the
baseline and the hub, so the ratio between them is fair.

Two modes: `load` (closed loop: N connections, each sends its next request when the
previous answer arrived; measures throughput) and `paced` (open loop: request i is
sent at t0 + i/rate whatever happened to earlier ones; measures latency at a steady
rate without the coordinated-omission error of a closed loop).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    requests: int
    seconds: float
    statuses: dict[int, int]
    latencies_ms: list[float]
    bodies: list[bytes] = field(default_factory=list)
    #: time.time() at which each answer arrived (paced mode; request order)
    answered_at: list[float] = field(default_factory=list)
    #: how late each request was sent against its schedule (paced mode), ms
    send_lag_ms: list[float] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def build_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None,
                  method: str = "POST") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", "Connection: keep-alive"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
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
    body = b""
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            parts.append((await reader.readexactly(size + 2))[:-2])
            if size == 0:
                break
        body = b"".join(parts)
    elif length:
        body = await reader.readexactly(length)
    return status, body


async def _worker(host: str, port: int, requests: Sequence[bytes], result: LoadResult,
                  keep_bodies: bool) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for req in requests:
            t0 = time.perf_counter()
            writer.write(req)
            status, body = await _read_response(reader)
            result.latencies_ms.append((time.perf_counter() - t0) * 1000)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if keep_bodies:
                result.bodies.append(body)
    finally:
        writer.close()


async def run_load(host: str, port: int, requests: Sequence[bytes], connections: int = 8,
                   keep_bodies: bool = False) -> LoadResult:
    result = LoadResult(len(requests), 0.0, {}, [])
    shards = [requests[i::connections] for i in range(connections)]
    t0 = time.perf_counter()
    await asyncio.gather(*(_worker(host, port, s, result, keep_bodies) for s in shards if s))
    result.seconds = time.perf_counter() - t0
    return result


def load(host: str, port: int, requests: Sequence[bytes], connections: int = 8,
         keep_bodies: bool = False) -> LoadResult:
    return asyncio.run(run_load(host, port, requests, connections, keep_bodies))


async def run_paced(host: str, port: int, requests: Sequence[bytes], rate: float,
                    connections: int = 32) -> LoadResult:
    """Open loop at `rate` requests/s over a pool of keep-alive connections.

    A request whose slot comes while every connection is busy waits for one (recorded in
    send_lag_ms); with enough connections that never happens at the rates measured here.
    """
    n = len(requests)
    result = LoadResult(n, 0.0, {}, [0.0] * n, [b""] * n, [0.0] * n, [0.0] * n)
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(host, port))
    loop = asyncio.get_running_loop()

    async def one(i: int, due: float) -> None:
        conn = await pool.get()
        reader, writer = conn
        t_send = loop.time()
        result.send_lag_ms[i] = (t_send - due) * 1000
        writer.write(requests[i])
        status, body = await _read_response(reader)
        result.answered_at[i] = time.time()
        result.latencies_ms[i] = (loop.time() - t_send) * 1000
        result.statuses[status] = result.statuses.get(status, 0) + 1
        result.bodies[i] = body
        pool.put_nowait(conn)

    t0 = loop.time() + 0.05
    tasks = []
    for i in range(n):
        due = t0 + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    result.seconds = loop.time() - t0
    while not pool.empty():
        _r, w = pool.get_nowait()
        w.close()
    return result


def paced(host: str, port: int, requests: Sequence[bytes], rate: float,
          connections: int = 32) -> LoadResult:
    return asyncio.run(run_paced(host, port, requests, rate, connections))
