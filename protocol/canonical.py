"""RFC 8785 JSON Canonicalization Scheme (JCS).

Why: signatures are computed over bytes, and two implementations must produce
the same bytes for the same value. We use the `rfc8785` package (Trail of Bits)
rather than writing a serializer: number formatting per ECMAScript
(RFC 8785 section 3.2.2.3) is easy to get subtly wrong.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import rfc8785

from .errors import Malformed, NonCanonical

__all__ = ["canonical_bytes", "parse_canonical", "parse_json"]

#: Nesting deeper than this is refused before anything else looks at it (SPEC 6).
MAX_DEPTH = 32


_SAFE_INT = 2**53


def _plain(value: Any, depth: int = 0) -> bool:
    """True when orjson's sorted output is byte-identical to JCS for `value`.

    That holds for objects, arrays, booleans, null, integers within IEEE-754's exact range and
    strings of printable ASCII without '"' or '\\' (written verbatim by both; with ASCII keys the
    UTF-16 ordering of RFC 8785 section 3.2.3 equals byte ordering). Anything else takes the
    reference implementation.
    """
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, str):
        return value.isascii() and value.isprintable() and '"' not in value and "\\" not in value
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return -_SAFE_INT < value < _SAFE_INT
    if isinstance(value, dict):
        return all(
            isinstance(k, str) and _plain(k) and _plain(v, depth + 1) for k, v in value.items()
        )
    if isinstance(value, list):
        return all(_plain(v, depth + 1) for v in value)
    return False


def canonical_bytes(value: Any) -> bytes:
    """Serialise `value` per RFC 8785. Raises Malformed on values JCS cannot represent."""
    if _plain(value):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise Malformed(f"value cannot be canonicalised: {type(exc).__name__}") from exc


def _reject_constant(name: str) -> Any:
    raise Malformed(f"JSON constant {name} is not allowed")


def _depth(value: Any, limit: int) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, d = stack.pop()
        if d > limit:
            raise Malformed(f"JSON nesting deeper than {limit}")
        if isinstance(item, dict):
            stack.extend((v, d + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, d + 1) for v in item)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise Malformed("duplicate JSON member name")
        out[k] = v
    return out


def parse_json(data: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Strict I-JSON parse (RFC 7493): UTF-8, no duplicate names, no NaN/Infinity."""
    try:
        text = data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise Malformed("invalid UTF-8") from exc
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except Malformed:
        raise
    except (ValueError, RecursionError) as exc:
        raise Malformed("invalid JSON") from exc
    _depth(value, max_depth)
    return value


def parse_canonical(data: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON and insist the bytes are already canonical, so what was signed is what is read."""
    value = parse_json(data, max_depth=max_depth)
    if canonical_bytes(value) != data:
        raise NonCanonical("bytes are not RFC 8785 canonical")
    return value
