"""UUIDv7 message ids: RFC 9562 layout, strict monotonic order, strict text form."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

import common.ids as ids
from common.ids import is_uuid7, new_message_id, uuid7, uuid7_timestamp_ms


def test_layout_version_and_variant() -> None:
    for _ in range(200):
        u = uuid7()
        assert u.version == 7
        assert u.variant == uuid.RFC_4122
        assert (u.int >> 76) & 0xF == 0x7
        assert (u.int >> 62) & 0b11 == 0b10


def test_text_form_is_canonical_lowercase() -> None:
    mid = new_message_id()
    assert mid == mid.lower()
    assert str(uuid.UUID(mid)) == mid
    assert is_uuid7(mid)


def test_timestamp_is_unix_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    mid = new_message_id()
    after = time.time_ns() // 1_000_000
    # Upper bound allows the RFC's "advance the clock on counter overflow" step.
    assert before <= uuid7_timestamp_ms(mid) <= after + 1_000


def test_strictly_increasing_within_process() -> None:
    generated = [new_message_id() for _ in range(20_000)]
    assert generated == sorted(generated)
    assert len(set(generated)) == len(generated)


def test_monotonic_when_clock_goes_backwards(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([5_000_000_000_000 * 1_000_000 - i * 1_000_000 for i in range(100)])
    monkeypatch.setattr(ids.time, "time_ns", lambda: next(clock))
    monkeypatch.setattr(ids, "_last_ms", -1)
    generated = [new_message_id() for _ in range(100)]
    assert generated == sorted(generated)
    assert len(set(generated)) == 100


def test_counter_overflow_advances_timestamp(monkeypatch: pytest.MonkeyPatch) -> None:
    fixed_ns = 1_700_000_000_000 * 1_000_000
    monkeypatch.setattr(ids.time, "time_ns", lambda: fixed_ns)
    monkeypatch.setattr(ids, "_last_ms", fixed_ns // 1_000_000)
    monkeypatch.setattr(ids, "_last_rand", (1 << 74) - 2)
    mid = new_message_id()
    assert uuid7_timestamp_ms(mid) == fixed_ns // 1_000_000 + 1
    assert is_uuid7(mid)


def test_unique_across_threads() -> None:
    results: list[list[str]] = [[] for _ in range(4)]

    def work(slot: list[str]) -> None:
        slot.extend(new_message_id() for _ in range(2_000))

    threads = [threading.Thread(target=work, args=(r,)) for r in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [m for r in results for m in r]
    assert len(set(everything)) == len(everything)
    for r in results:
        assert r == sorted(r)


@pytest.mark.parametrize(
    "value",
    [
        str(uuid.uuid4()),
        new_message_id().upper(),
        "{" + new_message_id() + "}",
        "urn:uuid:" + new_message_id(),
        new_message_id().replace("-", ""),
        "",
        "01890a5d-ac96-774b-0cd5-8a1e1f5a5b6c",  # variant bits 00
    ],
)
def test_is_uuid7_rejects_other_forms(value: str) -> None:
    assert not is_uuid7(value)


def test_is_uuid7_rejects_non_strings() -> None:
    assert not is_uuid7(123)  # type: ignore[arg-type]


def test_timestamp_of_invalid_id_raises() -> None:
    with pytest.raises(ValueError):
        uuid7_timestamp_ms(str(uuid.uuid4()))
