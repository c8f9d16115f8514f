"""Hostile variants of a genuine envelope: every header field, every member, every byte region.

Why a separate module: the same mutations are fed in-process to the protocol verifier (what
the hub checks and what a recipient checks) and over real HTTP to a running hub, and the
test must be able to say which field or byte region each variant attacked.

A mutation is a small value (``Mutation``) drawn by hypothesis; ``apply`` turns it into
bytes. Variants equal to the original are not hostile and are skipped by the callers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from protocol import canonical_bytes

HEADER_FIELDS = ("v", "id", "kind", "from", "to", "thread", "created_at", "expires_at",
                 "sender_kid", "recipient_kid", "meta")
MEMBERS = ("header", "sealed_key", "nonce", "ciphertext", "sig")

#: Values an attacker would try in any field (types, sizes, encodings, look-alikes).
ODD_VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 2, 2**53, 2**64, 1.5, -0.0, 1e308, "", " ", "\u0000",
    "a" * 5000, "é", "\u202e", "\ud7ff", "null", "[]", "{}", [], {}, [1], {"a": 1},
    "legal\u2010gt", "LEGAL-GT", "shelter-mx", "victim-b", "hostile-a", "third-c",
    "00000000-0000-0000-0000-000000000000", "01932f3e-1f2a-7c3b-8d4e-5f6a7b8c9d0e",
    "01932F3E-1F2A-7C3B-8D4E-5F6A7B8C9D0E", "2026-11-28T12:00:00Z", "2099-01-01T00:00:00Z",
    "1970-01-01T00:00:00Z", "2026-11-28T12:00:00+00:00", "2026-11-28 12:00:00",
    "2026-02-30T00:00:00Z", "referral", "status", "receipt", "problem", "notice", "admin",
    "sig-AAAAAAAAAAAAAAAAAAAAAA", "enc-AAAAAAAAAAAAAAAAAAAAAA", "AAAA", "AAA", "A",
    "____", "-_-_", "AA==", "AAAA\n", "../../etc/passwd", "<script>alert(1)</script>",
    "'; DROP TABLE messages; --", "%00", "\\u0000", {"priority": "high"},
    {"priority": "urgent", "category": "sgbv"}, {"priority": "sky-high"}, {"name": "Ana"},
]


@dataclass(frozen=True)
class Mutation:
    kind: str  # field | member | byte | bytes | structure
    target: str = ""
    value: Any = None
    pos: int = 0
    length: int = 0
    byte: int = 0

    def describe(self) -> str:
        v = repr(self.value)[:40]
        return f"{self.kind}:{self.target}:pos={self.pos}:len={self.length}:byte={self.byte}:{v}"


def _json_values() -> st.SearchStrategy[Any]:
    leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=40),
                     st.floats(allow_nan=False, allow_infinity=False))
    return st.recursive(leaf, lambda c: st.one_of(st.lists(c, max_size=3),
                                                  st.dictionaries(st.text(max_size=8), c,
                                                                  max_size=3)), max_leaves=6)


def mutations(raw_len: int) -> st.SearchStrategy[Mutation]:
    """Every kind of mutation of an envelope ``raw_len`` bytes long."""
    value = st.one_of(st.sampled_from(ODD_VALUES), _json_values())
    field = st.builds(Mutation, kind=st.just("field"), target=st.sampled_from(HEADER_FIELDS),
                      value=value)
    drop_field = st.builds(Mutation, kind=st.just("drop_field"),
                           target=st.sampled_from(HEADER_FIELDS))
    extra_field = st.builds(Mutation, kind=st.just("extra_field"),
                            target=st.text(min_size=1, max_size=12), value=value)
    member = st.builds(Mutation, kind=st.just("member"), target=st.sampled_from(MEMBERS),
                       value=value)
    drop_member = st.builds(Mutation, kind=st.just("drop_member"),
                            target=st.sampled_from(MEMBERS))
    b64_edit = st.builds(Mutation, kind=st.just("b64_edit"),
                         target=st.sampled_from(("sealed_key", "nonce", "ciphertext", "sig")),
                         pos=st.integers(0, 4000), byte=st.integers(0, 63),
                         length=st.integers(-3, 3))
    swap = st.builds(Mutation, kind=st.just("swap"),
                     target=st.sampled_from([f"{a}|{b}" for a in MEMBERS for b in MEMBERS
                                             if a < b] + [f"h.{a}|h.{b}" for a in
                                                          ("from", "to", "id", "thread",
                                                           "sender_kid", "recipient_kid",
                                                           "created_at", "expires_at")
                                                          for b in ("from", "to", "id",
                                                                    "thread", "sender_kid",
                                                                    "recipient_kid",
                                                                    "created_at", "expires_at")
                                                          if a < b]))
    flip = st.builds(Mutation, kind=st.just("flip"), pos=st.integers(0, raw_len - 1),
                     byte=st.integers(0, 7))
    setb = st.builds(Mutation, kind=st.just("set"), pos=st.integers(0, raw_len - 1),
                     byte=st.integers(0, 255))
    insert = st.builds(Mutation, kind=st.just("insert"), pos=st.integers(0, raw_len),
                       byte=st.integers(0, 255), length=st.integers(1, 4))
    delete = st.builds(Mutation, kind=st.just("delete"), pos=st.integers(0, raw_len - 1),
                       length=st.integers(1, 64))
    truncate = st.builds(Mutation, kind=st.just("truncate"), pos=st.integers(0, raw_len - 1))
    dup = st.builds(Mutation, kind=st.just("duplicate"), pos=st.integers(0, raw_len - 1),
                    length=st.integers(1, 200))
    structure = st.builds(Mutation, kind=st.just("structure"),
                          target=st.sampled_from(("dup_key", "whitespace", "reorder", "escape",
                                                  "bom", "trailing", "array", "nested",
                                                  "noncanonical_number", "utf16")))
    return st.one_of(field, drop_field, extra_field, member, drop_member, b64_edit, swap,
                     flip, setb, insert, delete, truncate, dup, structure)


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _dump(value: Any) -> bytes:
    try:
        return canonical_bytes(value)
    except Exception:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8", "surrogatepass")


def apply(raw: bytes, m: Mutation) -> bytes:
    """The mutated bytes (may equal ``raw`` for a no-op mutation)."""
    doc: dict[str, Any] = json.loads(raw)
    header = doc["header"]
    k = m.kind
    if k == "field":
        header[m.target] = m.value
        return _dump(doc)
    if k == "drop_field":
        header.pop(m.target, None)
        return _dump(doc)
    if k == "extra_field":
        header[m.target] = m.value
        return _dump(doc)
    if k == "member":
        doc[m.target] = m.value
        return _dump(doc)
    if k == "drop_member":
        doc.pop(m.target, None)
        return _dump(doc)
    if k == "b64_edit":
        text: str = doc[m.target]
        pos = m.pos % (len(text) + 1)
        if m.length > 0:
            text = text[:pos] + _B64[m.byte] * m.length + text[pos:]
        elif m.length < 0:
            text = text[:pos] + text[pos - m.length:]
        else:
            text = text[:pos] + _B64[m.byte] + text[pos + 1:]
        doc[m.target] = text
        return _dump(doc)
    if k == "swap":
        a, b = m.target.split("|")
        if a.startswith("h."):
            a, b = a[2:], b[2:]
            header[a], header[b] = header[b], header[a]
        else:
            doc[a], doc[b] = doc[b], doc[a]
        return _dump(doc)
    buf = bytearray(raw)
    if k == "flip":
        buf[m.pos] ^= 1 << m.byte
        return bytes(buf)
    if k == "set":
        buf[m.pos] = m.byte
        return bytes(buf)
    if k == "insert":
        return bytes(buf[: m.pos] + bytes([m.byte]) * m.length + buf[m.pos:])
    if k == "delete":
        return bytes(buf[: m.pos] + buf[m.pos + m.length:])
    if k == "truncate":
        return bytes(buf[: m.pos])
    if k == "duplicate":
        return bytes(buf[: m.pos] + buf[m.pos: m.pos + m.length] + buf[m.pos:])
    if k == "structure":
        return _structure(raw, doc, m.target)
    raise ValueError(k)


def _structure(raw: bytes, doc: dict[str, Any], how: str) -> bytes:
    text = raw.decode()
    if how == "dup_key":  # a second "sig" member (which one wins is parser-dependent)
        return raw[:-1] + b',"sig":"' + doc["sig"][::-1].encode() + b'"}'
    if how == "whitespace":
        return json.dumps(doc, indent=1).encode()
    if how == "reorder":
        return json.dumps(dict(reversed(list(doc.items()))), separators=(",", ":")).encode()
    if how == "escape":  # same string, escaped differently
        return re.sub(r'"v"', r'"\\u0076"', text, count=1).encode()
    if how == "bom":
        return b"\xef\xbb\xbf" + raw
    if how == "trailing":
        return raw + b"\n"
    if how == "array":
        return b"[" + raw + b"]"
    if how == "nested":
        return b'{"envelope":' + raw + b"}"
    if how == "noncanonical_number":
        return text.replace('"v":1', '"v":1.0', 1).encode()
    if how == "utf16":
        return text.encode("utf-16")
    raise ValueError(how)


def header_resigned(raw: bytes, changes: dict[str, Any], key: Any) -> bytes:
    """The envelope with header ``changes``, outer signature redone with ``key`` (an
    attacker who holds *a* member key, not the sender's)."""
    from protocol import b64u, b64u_decode, parse_envelope
    from protocol.envelope import Header, _outer_input

    env = parse_envelope(raw)
    doc = json.loads(raw)
    doc["header"].update(changes)
    header = Header.from_json(doc["header"])
    body = env.sealed_key + env.nonce + env.ciphertext
    doc["sig"] = b64u(key.sign(_outer_input(header, body)))
    assert b64u_decode(doc["sig"], length=64)
    return canonical_bytes(doc)
