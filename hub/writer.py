"""Group commit for ingest: concurrent requests share one transaction (and one fsync).

Why: every accepted envelope must be durable before its receipt is returned, so each
commit is fsynced (common.db: synchronous=FULL). On SQLite the write lock serialises
writers anyway, so N concurrent single-envelope submissions cost N fsyncs in a row.
Here one writer thread takes whatever work is queued, runs each piece in its own
SAVEPOINT (one request's failure does not undo another's), commits once, and only
then answers every waiting request. A request alone in the queue pays nothing extra.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import sqlalchemy as sa

from common.logging import get_logger

__all__ = ["GroupCommitWriter"]

T = TypeVar("T")
_log = get_logger(__name__)

#: At most this many requests share one transaction (bounds lock time and memory).
MAX_GROUP = 64


class GroupCommitWriter:
    def __init__(self, engine: sa.Engine, *, name: str = "hub-writer") -> None:
        self._engine = engine
        self._queue: queue.SimpleQueue[tuple[Callable[[sa.Connection], Any], Future[Any]] | None]
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._closed = False
        self._thread.start()

    def run(self, work: Callable[[sa.Connection], T]) -> T:
        """Run `work(conn)` inside a committed transaction; blocks until durable.

        `work` must not commit or roll back itself; an exception it raises is re-raised here
        (its SAVEPOINT was rolled back, the others' work still commits).
        """
        if self._closed:
            raise RuntimeError("writer is closed")
        fut: Future[T] = Future()
        self._queue.put((work, fut))
        return fut.result()

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            stop = False
            while len(group) < MAX_GROUP:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                group.append(nxt)
            self._commit_group(group)
            if stop:
                return

    def _commit_group(
        self, group: list[tuple[Callable[[sa.Connection], Any], Future[Any]]]
    ) -> None:
        results: list[tuple[Future[Any], bool, Any]] = []
        try:
            with self._engine.begin() as conn:
                if len(group) == 1:
                    work, fut = group[0]
                    try:
                        results.append((fut, True, work(conn)))
                    except Exception as exc:
                        # Alone in the transaction: roll it all back, nothing else to keep.
                        results.append((fut, False, exc))
                        raise
                else:
                    for work, fut in group:
                        try:
                            with conn.begin_nested():
                                value = work(conn)
                            results.append((fut, True, value))
                        except Exception as exc:
                            results.append((fut, False, exc))
        except Exception as exc:
            done = {id(f) for f, ok, _ in results if not ok}
            for _work, fut in group:
                if id(fut) not in done:
                    fut.set_exception(exc)
            for fut, ok, value in results:
                if not ok:
                    fut.set_exception(value)
            if len(group) > 1 or not results or results[0][1]:
                _log.warning("group_commit_failed", error=exc, count=len(group))
            return
        for fut, ok, value in results:
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)
