"""One writer for the node's busy paths: concurrent writes share a transaction and its fsync.

Why: every commit is fsynced (common.db: synchronous=FULL), and SQLite lets one writer in
at a time; a writer that finds the lock taken sleeps in SQLite's busy handler (1, 2, 5, 10,
... ms) instead of being woken when the lock frees. With referrals created through the API
while receipts come in and the outbox marks what it sent, that costs both throughput (one
fsync each) and latency (sleeps). Here one thread takes whatever work is queued, runs each
piece in its own SAVEPOINT (one piece's failure does not undo another's), commits once, and
only then answers every caller. A piece alone in the queue pays nothing extra.

Work must not commit, roll back or call the writer itself (that would wait for itself).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import sqlalchemy as sa

from common.logging import get_logger

__all__ = ["Writer"]

T = TypeVar("T")
_log = get_logger(__name__)

#: At most this many pieces share one transaction.
MAX_GROUP = 64

_Job = tuple[Callable[[sa.Connection], Any], Future[Any]]


class Writer:
    def __init__(self, engine: sa.Engine, *, name: str = "rssn-writer") -> None:
        self._engine = engine
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[sa.Connection], T]) -> Future[T]:
        if self._closed:
            raise RuntimeError("writer is closed")
        fut: Future[T] = Future()
        if threading.current_thread() is self._thread:
            raise RuntimeError("work must not call the writer")
        self._queue.put((work, fut))
        return fut

    def run(self, work: Callable[[sa.Connection], T]) -> T:
        """Run `work(conn)` in a committed transaction; returns once it is durable."""
        return self.submit(work).result()

    def close(self) -> None:
        if not self._closed:
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
            self._commit(group)
            if stop:
                return

    def _commit(self, group: list[_Job]) -> None:
        results: list[tuple[Future[Any], bool, Any]] = []
        try:
            with self._engine.begin() as conn:
                if len(group) == 1:
                    work, fut = group[0]
                    try:
                        results.append((fut, True, work(conn)))
                    except BaseException as exc:
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
        except BaseException as exc:
            failed = {id(f) for f, ok, _ in results if not ok}
            for _work, fut in group:
                if id(fut) not in failed:
                    fut.set_exception(exc if isinstance(exc, Exception) else RuntimeError(exc))
            for fut, ok, value in results:
                if not ok:
                    fut.set_exception(value)
            if len(group) > 1:
                _log.warning("group_commit_failed", error=exc, count=len(group))
            return
        for fut, ok, value in results:
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)
