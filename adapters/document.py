"""Shared steps of every converter: value parsing, attested consent, protocol validation.

Why here: the last step of every adapter is the same - hand the draft to the
protocol's own `parse_document`, so an adapter can never emit a document that a
receiving node would refuse. Its errors carry a field path and a rule, never the
input value, which is exactly what the report may contain.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any

from protocol.documents import LEGAL_BASES, document_to_json, parse_document
from protocol.errors import ConsentMissing, ProtocolError

from .base import CONSENT, INVALID, MALFORMED, MISSING, ConvertOptions, RecordRejected

__all__ = [
    "attested_consent",
    "finalize",
    "parse_age",
    "parse_date",
    "parse_instant",
    "strip_html",
]


def finalize(draft: dict[str, Any]) -> dict[str, Any]:
    """Validate with the protocol and return the normal-form JSON dict."""
    try:
        doc = parse_document("referral", draft)
    except ConsentMissing as exc:
        raise RecordRejected(exc.field or "consent", CONSENT, exc.detail) from None
    except ProtocolError as exc:
        raise RecordRejected(exc.field or "", exc.code if exc.code != "malformed" else INVALID,
                             f"referral document: {exc.detail}") from None
    return document_to_json(doc)


_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?"
                   r"(Z|[+-]\d{2}:?\d{2})?)?$")
_DMY = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


def parse_date(value: Any, field: str, *, dmy: bool = False) -> str:
    """A calendar date as YYYY-MM-DD.

    Dynamics stores dates of birth as UTC instants of local midnight, so
    `1982-10-09T17:00:00Z` is 10 October in a UTC+7 office. An instant at or after
    12:00 UTC is read as the next day's local midnight, before 12:00 as the same day
    (offsets run from -12 to +14; the network's offices are at -3..-8 and +1..+8).
    """
    if isinstance(value, dt.datetime):
        value = value.isoformat()
    elif isinstance(value, dt.date):
        return value.isoformat()
    if not isinstance(value, str):
        raise RecordRejected(field, MALFORMED, f"{field} is not a date")
    s = value.strip()
    m = _DATE.match(s)
    if m is None and dmy:
        m2 = _DMY.match(s)
        if m2:
            d, mo, y = (int(x) for x in m2.groups())
            try:
                return dt.date(y, mo, d).isoformat()
            except ValueError:
                raise RecordRejected(field, MALFORMED, f"{field} is not a valid date") from None
    if m is None:
        raise RecordRejected(field, MALFORMED, f"{field} is not a date in YYYY-MM-DD form")
    y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    try:
        day = dt.date(y, mo, d)
    except ValueError:
        raise RecordRejected(field, MALFORMED, f"{field} is not a valid calendar date") from None
    hour = m.group(4)
    tz = m.group(7)
    if hour is not None and tz in ("Z", "+00:00", "+0000") and int(hour) >= 12:
        day += dt.timedelta(days=1)
    return day.isoformat()


def parse_instant(value: Any, field: str) -> str:
    """An RFC 3339 instant; a bare date means 00:00 UTC of that day."""
    if isinstance(value, str):
        s = value.strip()
        if len(s) == 10:
            return parse_date(s, field) + "T00:00:00Z"
        try:
            t = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            raise RecordRejected(field, MALFORMED, f"{field} is not a date-time") from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.UTC)
        t = t.astimezone(dt.UTC).replace(microsecond=0)
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    raise RecordRejected(field, MALFORMED, f"{field} is not a date-time")


def parse_age(value: Any, field: str) -> int:
    if isinstance(value, bool):
        raise RecordRejected(field, MALFORMED, f"{field} is not a whole number")
    if isinstance(value, int):
        n = value
    elif isinstance(value, float) and value.is_integer():
        n = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        n = int(value.strip())
    else:
        raise RecordRejected(field, MALFORMED, f"{field} is not a whole number")
    if not 0 <= n <= 120:
        raise RecordRejected(field, MALFORMED, f"{field} is outside 0..120")
    return n


_TAG = re.compile(r"<[^>]*>")
_WS = re.compile(r"[ \t]+")


def strip_html(text: str) -> str:
    """proGres descriptions are HTML fragments: keep the text, drop the markup."""
    if "<" not in text and "&" not in text and "\n" not in text:
        return text.strip()
    t = re.sub(r"(?i)<br\s*/?>|</p>", "\n", text)
    t = html.unescape(_TAG.sub("", t))
    lines = [_WS.sub(" ", ln).strip() for ln in t.splitlines()]
    return "\n".join(ln for ln in lines if ln)


def attested_consent(options: ConvertOptions, given_by: str, status: str,
                     source: str) -> dict[str, Any]:
    """Consent section for a source that holds no consent record, or refuse.

    The operator states the legal basis and who attests it (`--legal-basis`,
    `--attested-by`); both are recorded in the referral, with the attestation time.
    """
    if not options.legal_basis or not options.attested_by:
        raise RecordRejected("consent", CONSENT,
                             f"{source} carries no consent record: state --legal-basis and "
                             "--attested-by to convert on an attested legal basis")
    if options.legal_basis not in LEGAL_BASES:
        raise RecordRejected("consent.legal_basis", CONSENT, "unknown legal basis")
    if not options.attested_at:
        raise RecordRejected("consent.obtained_at", MISSING, "no attestation time")
    if options.legal_basis != "consent" and status == "granted":
        # No consent record exists: say so instead of claiming consent was granted.
        status = "not_recorded"
    return {
        "status": status,
        "given_by": given_by,
        "obtained_at": options.attested_at,
        "legal_basis": options.legal_basis,
        "attested_by": options.attested_by,
        "restrictions": [f"No consent record in {source}: shared on the legal basis stated and "
                         "attested by the operator who converted the record."],
    }
