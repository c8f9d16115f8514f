"""A tiny round-robin TCP forwarder: the load balancer in front of several hub processes.

Why TCP and not HTTP: it is what an L4 balancer (or nginx's stream module, or a cloud load
balancer in TCP mode) does, and it is enough for the hub, which keeps no state in a process.
Each new client connection goes to the next upstream; an upstream that refuses the connection
is skipped for that connection (nginx's ``proxy_next_upstream error``), so a killed process
stops receiving traffic at once, and takes it again as soon as it listens. Connections that
were open to a process when it died are cut, as they would be in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter

from tests.helpers.processes import free_port

__all__ = ["RoundRobinProxy"]


class RoundRobinProxy:
    def __init__(self, upstream_ports: list[int], port: int | None = None) -> None:
        self.upstreams = list(upstream_ports)
        self.port = port or free_port()
        #: Connections forwarded, per upstream port.
        self.forwarded: Counter[int] = Counter()
        #: Connection attempts an upstream refused (it was down), per upstream port.
        self.refused: Counter[int] = Counter()
        self._next = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"rr-{self.port}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RoundRobinProxy:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("round-robin proxy did not start")
        return self

    def close(self) -> None:
        if self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(10)

    # -- the event loop thread ---------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stopped = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.ensure_future(self._handle(reader, writer))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        server = await asyncio.start_server(on_client, "127.0.0.1", self.port, backlog=256)
        self._ready.set()
        async with server:
            await self._stopped.wait()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        for _ in range(len(self.upstreams)):
            port = self.upstreams[self._next % len(self.upstreams)]
            self._next += 1
            try:
                upstream = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), timeout=5)
            except (OSError, TimeoutError):
                self.refused[port] += 1
                continue
            self.forwarded[port] += 1
            break
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer),
                             return_exceptions=True)

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # Either side closing (or dying) closes the pair: the client sees the cut.
            with contextlib.suppress(Exception):
                dst.close()
