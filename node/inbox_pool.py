"""Opening a backlog of referrals on every core (catch-up after days offline).

Why processes: opening a referral (two signature checks, decryption, strict parsing and
validation of the document) and sealing its receipt cost about a millisecond of CPU,
more than half of it Python that holds the GIL, so threads cannot use a second core for
it. A node back from a week offline may find thousands waiting; this pool does that work
in worker processes while the receiver keeps the database work.

What crosses the process boundary: envelope bytes and the verified directory in, plain
strings out (the document as JSON, the signed statement, the sealed receipt). Keys are
handed to the workers once, through the pipe of a process started by this process
(`spawn`, so no thread state is copied); the workers are stopped when the backlog is gone.
Any envelope the worker cannot open or accept comes back as `None` and the receiver
handles it on its own path, which raises the precise error (quarantine, problem answer).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from protocol import Directory

__all__ = ["Opened", "ReferralOpener"]

#: (document JSON, priority, category, statement, inner signature hex,
#:  receipt message id, receipt envelope, receipt digest)
Opened = tuple[str, str | None, str | None, str, str, str, str, str]

_state: dict[str, Any] = {}


def _init(node_id: str, signing_seed: bytes, encryption: list[bytes]) -> None:
    from protocol import EncryptionKeyPair, SigningKeyPair

    keys = [EncryptionKeyPair.generate(s) for s in encryption]
    _state.update(node_id=node_id, signing=SigningKeyPair.generate(signing_seed),
                  encryption={k.kid: k for k in keys})


def _ready() -> bool:
    import protocol.consent
    import protocol.documents  # noqa: F401

    return True


def _open_chunk(directory: Directory, raws: list[bytes]) -> list[Opened | None]:
    from common.ids import new_message_id
    from protocol import ProtocolError, open_envelope, parse_envelope, seal
    from protocol.consent import check_consent
    from protocol.documents import monitoring_fields

    node_id: str = _state["node_id"]
    me = directory.entries.get(node_id)
    out: list[Opened | None] = []
    for raw in raws:
        try:
            env = parse_envelope(raw)
            h = env.header
            now = datetime.now(UTC)
            opened = open_envelope(env, recipient=node_id, encryption_keys=_state["encryption"],
                                   resolver=directory, now=now)
            doc = opened.document
            check_consent(doc, recipient_node=node_id,
                          recipient_org=me.organization if me else None, now=h.created_at)
            meta = monitoring_fields(doc)
            created = now.replace(microsecond=0)
            receipt = seal(
                sender=node_id, signing_key=_state["signing"], recipient=h.sender,
                recipient_key=directory.entry(h.sender).current_encryption_key(created),
                kind="receipt", thread=h.thread, message_id=new_message_id(),
                document={"message_id": h.id, "envelope_digest": env.digest,
                          "received_at": now.strftime("%Y-%m-%dT%H:%M:%SZ")},
                created_at=created,
            )
        except ProtocolError:
            out.append(None)
            continue
        out.append((json.dumps(opened.document_json, separators=(",", ":")),
                    meta.get("priority"), meta.get("category"),
                    opened.statement.decode("utf-8"), opened.inner_signature.hex(),
                    receipt.header.id, receipt.raw.decode("utf-8"), receipt.digest))
    return out


class ReferralOpener:
    """A process pool that exists while there is a backlog (see the module docstring)."""

    #: Fewer referrals than this in a page are opened in the receiver's own threads.
    MIN_BULK = 64

    def __init__(self, node_id: str, signing_seed: bytes, encryption: list[bytes]) -> None:
        import multiprocessing

        self.workers = max(1, min(4, os.cpu_count() or 1))
        self._pool: ProcessPoolExecutor | None = ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init, initargs=(node_id, signing_seed, encryption))
        self._warm: list[Future[bool]] = [self._pool.submit(_ready)
                                          for _ in range(self.workers)]

    @property
    def ready(self) -> bool:
        return self._pool is not None and all(f.done() and not f.exception()
                                              for f in self._warm)

    def open(self, directory: Directory, raws: list[bytes]) -> list[Opened | None]:
        assert self._pool is not None
        n = len(raws)
        size = max(1, -(-n // (self.workers * 2)))
        parts = [raws[i:i + size] for i in range(0, n, size)]
        out: list[Opened | None] = []
        for part in self._pool.map(_open_chunk, [directory] * len(parts), parts):
            out.extend(part)
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
