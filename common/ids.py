"""Message ids: UUIDv7 (RFC 9562 section 5.7).

Why UUIDv7: ids sort by creation time, so outbox/inbox tables and the hub's
queues stay append-mostly in their B-tree indexes, and an operator can read
the approximate age of a message from its id without any personal data.
Python 3.11 has no ``uuid.uuid7`` (3.14 adds one), so this follows the RFC:

* 48 bits ``unix_ts_ms`` (big-endian milliseconds since the Unix epoch),
* 4 bits version ``0b0111``,
* 12 bits ``rand_a`` and, after the 2 variant bits ``0b10``, 62 bits ``rand_b``.

Monotonicity (RFC 9562 section 6.2, method 2 "monotonic random"): within one
process, the 74 bits ``rand_a || rand_b`` are treated as one counter. When the
clock has not advanced (or went backwards) since the last id, the previous
timestamp is reused and the counter is incremented by a random amount of at
most 32 bits, so ids stay unguessable yet strictly increasing. If the counter
would overflow, the timestamp is advanced by one millisecond, as the RFC
allows. All randomness comes from :func:`os.urandom`.

Retries never mint a new id: callers create the id once, store it with the
message, and resend that stored value.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid

__all__ = ["is_uuid7", "new_message_id", "uuid7", "uuid7_timestamp_ms"]

_RAND_BITS = 74
_RAND_MAX = (1 << _RAND_BITS) - 1
_TS_MAX = (1 << 48) - 1

_lock = threading.Lock()
_last_ms = -1
_last_rand = 0

_UUID7_RE = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)


def _random_bits(n: int) -> int:
    return int.from_bytes(os.urandom((n + 7) // 8), "big") >> ((8 - n % 8) % 8)


def _reset_after_fork() -> None:
    # A forked child must not continue the parent's counter from the same
    # state: both would then draw from the same sequence start.
    global _last_ms, _last_rand
    _last_ms = -1
    _last_rand = 0


os.register_at_fork(after_in_child=_reset_after_fork)


def uuid7() -> uuid.UUID:
    """A new UUIDv7, strictly greater than every earlier one from this process."""
    global _last_ms, _last_rand
    now_ms = time.time_ns() // 1_000_000
    with _lock:
        if now_ms > _last_ms:
            ms = now_ms
            rand = _random_bits(_RAND_BITS)
            # Leave headroom so the next few increments in the same
            # millisecond do not overflow immediately.
            rand &= _RAND_MAX >> 1
        else:
            ms = _last_ms
            rand = _last_rand + 1 + _random_bits(32)
            if rand > _RAND_MAX:
                ms += 1
                rand = _random_bits(_RAND_BITS) & (_RAND_MAX >> 1)
        if ms > _TS_MAX:  # pragma: no cover - year 10889
            raise OverflowError("UUIDv7 timestamp overflow")
        _last_ms, _last_rand = ms, rand

    rand_a = rand >> 62
    rand_b = rand & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return uuid.UUID(int=value)


def new_message_id() -> str:
    """A new message id in canonical lower-case hyphenated form."""
    return str(uuid7())


def is_uuid7(value: str) -> bool:
    """True for the canonical lower-case text form of an RFC 9562 version-7 UUID.

    Why strict (no upper case, no braces, no URN prefix): ids are compared as
    strings in stores on both sides of the network; two spellings of one id
    would defeat de-duplication.
    """
    return isinstance(value, str) and _UUID7_RE.fullmatch(value) is not None


def uuid7_timestamp_ms(value: str) -> int:
    """Milliseconds since the Unix epoch encoded in a UUIDv7 (for age checks and metrics)."""
    if not is_uuid7(value):
        raise ValueError("not a canonical UUIDv7")
    return uuid.UUID(value).int >> 80
