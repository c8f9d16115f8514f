"""One exception hierarchy with stable string codes.

Why: hub/ and node/ turn every refusal into RFC 9457 problem+json, and the
sender's software must be able to act on the *code* without parsing prose.
Codes are part of the wire contract (SPEC.md section "Errors"): never rename
one, only add. Messages carry ids and codes, never personal data.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ERROR_CODES",
    "BadSignature",
    "Conflict",
    "ConsentMissing",
    "Expired",
    "FutureDated",
    "InvalidTransition",
    "Malformed",
    "NotAuthorized",
    "ProtocolError",
    "Replayed",
    "TooLarge",
    "UnknownKey",
    "UnsupportedVersion",
    "WrongRecipient",
    "error_for_code",
]


class ProtocolError(Exception):
    """Base class: every refusal of the protocol is one of these."""

    code: ClassVar[str] = "protocol_error"
    title: ClassVar[str] = "Protocol error"
    #: HTTP status a shell SHOULD use when turning this into problem+json.
    http_status: ClassVar[int] = 400

    def __init__(self, detail: str = "", *, field: str | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.field = field

    def to_problem(self) -> dict[str, object]:
        """RFC 9457 members; `type` is a stable URN built from the code."""
        problem: dict[str, object] = {
            "type": f"urn:rssn:problem:{self.code}",
            "title": self.title,
            "status": self.http_status,
            "detail": self.detail,
            "code": self.code,
        }
        if self.field is not None:
            problem["field"] = self.field
        return problem


class Malformed(ProtocolError):
    code = "malformed"
    title = "Malformed message or document"
    http_status = 400


class NonCanonical(Malformed):
    code = "non_canonical"
    title = "JSON is not in RFC 8785 canonical form"


class BadSignature(ProtocolError):
    code = "bad_signature"
    title = "Signature does not verify"
    http_status = 401


class UnknownKey(ProtocolError):
    code = "unknown_key"
    title = "Key id is not known or not valid at this time"
    http_status = 401


class WrongRecipient(ProtocolError):
    code = "wrong_recipient"
    title = "Message is not addressed to this recipient or key"
    http_status = 422


class Expired(ProtocolError):
    code = "expired"
    title = "Message has expired"
    http_status = 422


class FutureDated(ProtocolError):
    code = "future_dated"
    title = "Message is dated beyond the allowed clock skew"
    http_status = 422


class Replayed(ProtocolError):
    code = "replayed"
    title = "Message id was already used"
    http_status = 409


class Conflict(ProtocolError):
    code = "conflict"
    title = "A different message was already stored under this id"
    http_status = 409


class UnsupportedVersion(ProtocolError):
    code = "unsupported_version"
    title = "Protocol version is not supported"
    http_status = 400


class TooLarge(ProtocolError):
    code = "too_large"
    title = "Message or attachment exceeds the size limit"
    http_status = 413


class ConsentMissing(ProtocolError):
    code = "consent_missing"
    title = "No valid consent record or legal basis permits this sharing"
    http_status = 422


class InvalidTransition(ProtocolError):
    code = "invalid_transition"
    title = "This status change is not allowed by the lifecycle"
    http_status = 409


class NotAuthorized(ProtocolError):
    code = "not_authorized"
    title = "Caller is not allowed to do this"
    http_status = 403


class DecryptionFailed(ProtocolError):
    code = "decryption_failed"
    title = "Ciphertext could not be decrypted or authenticated"
    http_status = 422


class HeaderMismatch(ProtocolError):
    code = "header_mismatch"
    title = "Signed inner document does not match the visible header"
    http_status = 422


def _all_subclasses(cls: type[ProtocolError]) -> list[type[ProtocolError]]:
    out: list[type[ProtocolError]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


#: code -> exception class, for shells that receive a `problem` and re-raise it.
ERROR_CODES: dict[str, type[ProtocolError]] = {ProtocolError.code: ProtocolError}
for _cls in _all_subclasses(ProtocolError):
    ERROR_CODES[_cls.code] = _cls

__all__ += ["DecryptionFailed", "HeaderMismatch", "NonCanonical"]


def error_for_code(code: str, detail: str = "") -> ProtocolError:
    """Rebuild a typed error from a stable code (unknown codes map to the base class)."""
    return ERROR_CODES.get(code, ProtocolError)(detail)
