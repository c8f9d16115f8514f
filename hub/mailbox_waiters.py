"""Wake-ups for long-polls.

Fast path: an envelope stored by this process sets the events of the
recipient's waiting polls at once. Slow path (another process stored it, or a
lease ran out): `poll_forever` asks the database every ~200 ms, in one query
for all nodes currently waiting, which of them have something to pull.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

from common.logging import get_logger

__all__ = ["MailboxWaiters"]

_log = get_logger(__name__)


class MailboxWaiters:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}

    def register(self, node_id: str) -> asyncio.Event:
        ev = asyncio.Event()
        self._waiters.setdefault(node_id, set()).add(ev)
        return ev

    def unregister(self, node_id: str, ev: asyncio.Event) -> None:
        s = self._waiters.get(node_id)
        if s is not None:
            s.discard(ev)
            if not s:
                del self._waiters[node_id]

    def waiting(self) -> list[str]:
        return list(self._waiters)

    def notify(self, node_ids: Iterable[str]) -> None:
        """Call from the event loop thread."""
        for n in node_ids:
            for ev in self._waiters.get(n, ()):
                ev.set()

    async def poll_forever(
        self, available: Callable[[list[str]], Awaitable[set[str]]], interval: float
    ) -> None:
        while True:
            await asyncio.sleep(interval)
            nodes = self.waiting()
            if not nodes:
                continue
            try:
                ready = await available(nodes)
            except Exception as exc:  # the waker must survive a database hiccup
                _log.warning("mailbox_poll_failed", error=exc)
                continue
            self.notify(ready)
