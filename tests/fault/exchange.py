"""Sustained referral traffic between real nodes, and the sent/delivered/processed comparison.

Why a helper: every fault test ends with the same question, asked the same way: of the
referrals the case systems handed to their nodes, which ones did the recipient process
(how many times), which ones were reported failed to their sender, and which ones neither
(lost). Receipts going back are messages too and are compared the same way.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from node.samples import sample_referral
from tests.fault.harness import HubProc, NodeProc, Refused, wait_until
from tests.reliability_summary import Recorder


@dataclass
class Traffic:
    """Referral creation through the nodes' local APIs, in background threads, paced."""

    sent: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: API calls the case system had to repeat (the node could not answer at that moment).
    retries: int = 0

    def start(self, src: NodeProc, dst: NodeProc, count: int, *, seconds: float = 0.0,
              offset: int = 0) -> None:
        """Create ``count`` referrals src -> dst, spread evenly over about ``seconds``."""
        key = (src.node_id, dst.node_id)
        with self.lock:
            self.sent.setdefault(key, set())

        def run() -> None:
            t0 = time.monotonic()
            step = seconds / count if count else 0.0
            for i in range(count):
                delay = t0 + i * step - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                # A case system retries when its node does not answer (e.g. the node's
                # database is down); a refusal it did get is never retried.
                give_up = time.monotonic() + 300
                while True:
                    try:
                        rid = src.send(dst.node_id, sample_referral(offset + i))
                    except Exception as exc:
                        if isinstance(exc, Refused) or time.monotonic() > give_up:
                            with self.lock:
                                self.errors.append(f"{key} #{i}: {type(exc).__name__}: {exc}")
                            break
                        with self.lock:
                            self.retries += 1
                        time.sleep(0.5)
                        continue
                    with self.lock:
                        self.sent[key].add(rid)
                    break

        t = threading.Thread(target=run, daemon=True, name=f"traffic-{key}")
        t.start()
        self.threads.append(t)

    def running(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    def join(self, timeout: float = 1200) -> None:
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        assert not self.running(), "referral creation did not finish"

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.sent.values())


def settled(src: NodeProc, dst: NodeProc, ids: set[str]) -> bool:
    """Every referral in ``ids`` is received or failed at the sender, and both outboxes are
    empty of pending messages."""
    statuses = src.outbound(dst.node_id)
    if any(statuses.get(i) not in ("received", "failed") for i in ids):
        return False
    return not src.outbox_states().get("pending") and not dst.outbox_states().get("pending")


def wait_settled(pairs: list[tuple[NodeProc, NodeProc, set[str]]], timeout: float) -> None:
    def check() -> bool:
        return all(settled(s, d, ids) for s, d, ids in pairs)

    def progress() -> str:
        out = []
        for s, d, ids in pairs:
            st = Counter(s.outbound(d.node_id).get(i, "missing") for i in ids)
            out.append(f"{s.node_id}->{d.node_id}: {dict(st)} outbox {dict(s.outbox_states())}")
        return "; ".join(out)

    try:
        wait_until(check, timeout=timeout, interval=1.0, message="every referral settled")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}: {progress()}") from None


def compare(tally: Recorder, hub: HubProc | None, src: NodeProc, dst: NodeProc,
            ids: set[str], **extra: Any) -> tuple[int, int]:
    """Record and return (lost, duplicated) for referrals src -> dst and receipts back."""
    statuses = src.outbound(dst.node_id)
    failed = {i for i in ids if statuses.get(i) == "failed"}
    processed = dst.processed_referrals(src.node_id)
    delivered: set[str] | None = None
    if hub is not None:
        delivered = {r[0] for r in hub.sql(
            "SELECT thread FROM messages WHERE kind = 'referral' AND sender = :s AND "
            "recipient = :d AND delivered_at_ms IS NOT NULL", s=src.node_id, d=dst.node_id)}
    lost1, dup1 = tally.exchange(
        f"referrals {src.node_id}->{dst.node_id}", sent=ids, processed=dict(processed),
        failed_reported=failed, delivered=delivered & ids if delivered is not None else None,
        **extra)
    # Receipts: every referral the recipient processed is answered once, and applied once.
    receipt_ids = {r[0] for r in dst.sql(
        "SELECT referral_id FROM outbox WHERE kind = 'receipt' AND to_node = :s", s=src.node_id)}
    applied = src.processed_receipts(dst.node_id)
    lost2, dup2 = tally.exchange(
        f"receipts {dst.node_id}->{src.node_id}", sent=receipt_ids & ids,
        processed={k: v for k, v in applied.items() if k in ids}, failed_reported=set())
    return lost1 + lost2, dup1 + dup2
