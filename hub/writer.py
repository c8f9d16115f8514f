"""Group commit for ingest: concurrent requests share one transaction (and one fsync).

Why: every accepted envelope must be durable before its receipt is returned, so each
commit is fsynced (common.db: synchronous=FULL). On SQLite the write lock serialises
writers anyway, so N concurrent single-envelope submissions cost N fsyncs in a row.
Here one writer thread takes whatever work is queued, runs each piece in its own
SAVEPOINT (one request's failure does not undo another's), commits once, and only
then answers every waiting request. A request alone in the queue pays nothing extra.

Mergeable work (`run_merged` / `submit_merged`): queued items that share a merge function
run as one call in one SAVEPOINT (for ingest: one node check per node, one duplicate
lookup and one multi-row insert per table for all waiting requests, instead of a handful
of statements each). If that call fails, each item is retried alone in its own
SAVEPOINT, so one item's failure still cannot undo another's.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa

from common.logging import get_logger

__all__ = ["GroupCommitWriter"]

T = TypeVar("T")
_log = get_logger(__name__)

#: At most this many requests share one transaction (bounds lock time and memory).
MAX_GROUP = 64

#: merge(conn, items) -> one result per item, in order; a result that is an Exception
#: instance is raised to that item's caller (the others' work still commits).
MergeFn = Callable[[sa.Connection, Sequence[Any]], Sequence[Any]]


@dataclass(frozen=True)
class _Merged:
    merge: MergeFn
    item: Any


_Job = tuple[Callable[[sa.Connection], Any] | _Merged, Future[Any]]


class GroupCommitWriter:
    def __init__(self, engine: sa.Engine, *, name: str = "hub-writer") -> None:
        self._engine = engine
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
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

    def submit_merged(self, merge: MergeFn, item: Any) -> Future[Any]:
        """Queue `item` for `merge` (see the module docstring); the future holds its result.

        Callers on an event loop await it with `asyncio.wrap_future` (no worker thread).
        """
        if self._closed:
            raise RuntimeError("writer is closed")
        fut: Future[Any] = Future()
        self._queue.put((_Merged(merge, item), fut))
        return fut

    def run_merged(self, merge: MergeFn, item: Any) -> Any:
        return self.submit_merged(merge, item).result()

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

    def _commit_group(self, group: list[_Job]) -> None:
        results: list[tuple[Future[Any], bool, Any]] = []
        try:
            with self._engine.begin() as conn:
                if len(group) == 1:
                    work, fut = group[0]
                    try:
                        value = (work.merge(conn, [work.item])[0] if isinstance(work, _Merged)
                                 else work(conn))
                    except Exception as exc:
                        # Alone in the transaction: roll it all back, nothing else to keep.
                        results.append((fut, False, exc))
                        raise
                    if isinstance(work, _Merged) and isinstance(value, Exception):
                        results.append((fut, False, value))
                        raise value
                    results.append((fut, True, value))
                else:
                    self._run_group(conn, group, results)
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

    @staticmethod
    def _run_group(conn: sa.Connection, group: list[_Job],
                   results: list[tuple[Future[Any], bool, Any]]) -> None:
        merged: dict[int, list[tuple[_Merged, Future[Any]]]] = {}
        plain: list[tuple[Callable[[sa.Connection], Any], Future[Any]]] = []
        for work, fut in group:
            if isinstance(work, _Merged):
                merged.setdefault(id(work.merge), []).append((work, fut))
            else:
                plain.append((work, fut))
        for jobs in merged.values():
            merge = jobs[0][0].merge
            try:
                with conn.begin_nested():
                    values = list(merge(conn, [w.item for w, _ in jobs]))
                    if len(values) != len(jobs):
                        raise RuntimeError("merge returned the wrong number of results")
            except Exception:
                # One of them broke the shared call: each alone, so the others still commit.
                values = []
                for w, _ in jobs:
                    try:
                        with conn.begin_nested():
                            values.append(merge(conn, [w.item])[0])
                    except Exception as exc:
                        values.append(exc)
            for (_, fut), value in zip(jobs, values, strict=True):
                results.append((fut, not isinstance(value, Exception), value))
        for work, fut in plain:
            try:
                with conn.begin_nested():
                    value = work(conn)
                results.append((fut, True, value))
            except Exception as exc:
                results.append((fut, False, exc))
