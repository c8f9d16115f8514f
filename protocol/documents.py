"""The message bodies of protocol v1: the referral document and the four follow-up documents.

Why pydantic models with `extra="forbid"`: a document crosses organisations, countries and
software vendors; anything a receiver does not understand must be refused loudly rather than
dropped silently, and every free-text member has a length limit so nothing unbounded gets in.

Kinds (the envelope says which one a body is): `referral` (ReferralDocument), `status`
(StatusChange), `receipt` (Receipt), `consent_withdrawn` (ConsentWithdrawn), `problem` (Problem).
The referral id is the envelope's thread id, so no document repeats it.

Wire rules that pydantic's lax mode would otherwise bend (enforced when parsing with
`parse_document`, which is what receivers use):

- date-times are RFC 3339 strings with an explicit offset (at most 6 fractional digits); they are
  held in UTC truncated to whole seconds and written back as `YYYY-MM-DDTHH:MM:SSZ`, the only
  time form of the protocol (SPEC section 2);
- dates are `YYYY-MM-DD` strings; integers and booleans must be JSON integers and booleans;
- codes come from the controlled vocabularies in protocol/vocab (services, concerns, ISO 3166-1
  alpha-2 countries, ISO 639 languages; two-letter ISO 639-1 where one exists, as BCP 47 says);
- attachments are canonical base64 (RFC 4648 section 4, padded), at most 1 MiB each decoded and
  4 MiB together; a larger one is refused with TooLarge.

Errors: `parse_document` raises `Malformed(detail, field="dotted.path")` (list positions are
numbers: `subject.nationality.0`), `ConsentMissing` when a referral has no consent record, or
`TooLarge`. The detail is built from the rule that failed and never from the input value, so an
error can be logged and returned to the sender without carrying personal data.

Normal form (`document_to_json`): JSON values, times as above, and members equal to their
default (null, empty list, false) left out. A receiver refuses a document that is not already in
normal form (SPEC section 7 step 8); the issue's minimal referral is in normal form.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from . import vocab
from .errors import ConsentMissing, Malformed, ProtocolError, TooLarge

__all__ = [
    "ATTACHMENTS_TOTAL_MAX_BYTES",
    "ATTACHMENT_MAX_BYTES",
    "CONSENT_STATUSES",
    "DOCUMENT_MODELS",
    "GIVEN_BY",
    "KINDS",
    "LEGAL_BASES",
    "MONITORING_CATEGORIES",
    "PRIORITIES",
    "PRIORITY_DEADLINES",
    "REPORTABLE_STATUSES",
    "Attachment",
    "Caregiver",
    "Consent",
    "ConsentScope",
    "ConsentWithdrawn",
    "Document",
    "Identifier",
    "Location",
    "Problem",
    "Receipt",
    "ReferralDocument",
    "Referrer",
    "SafeContact",
    "StatusChange",
    "Subject",
    "document_to_json",
    "format_datetime",
    "kind_of",
    "monitoring_fields",
    "parse_document",
    "parse_referral",
    "response_due",
]

# --------------------------------------------------------------------------------------------
# Constants of the contract
# --------------------------------------------------------------------------------------------

#: Document kinds carried by the envelope.
KINDS: Final = ("referral", "status", "receipt", "consent_withdrawn", "problem")

#: Priorities of the inter-agency referral form: Emergency / Urgent / Normal on paper.
PRIORITIES: Final = ("urgent", "high", "normal")

#: Time within which the receiving organisation should respond, per priority.
PRIORITY_DEADLINES: Final[dict[str, timedelta]] = {
    "urgent": timedelta(hours=24),
    "high": timedelta(hours=72),
    "normal": timedelta(days=14),
}

#: Statuses a StatusChange may report: the lifecycle's statuses except the initial `requested`
#: (protocol.lifecycle says which moves are legal and who may make them).
REPORTABLE_STATUSES: Final = (
    "received",
    "accepted",
    "declined",
    "in_progress",
    "completed",
    "cancelled",
    "failed",
)

CONSENT_STATUSES: Final = ("granted", "withdrawn", "refused", "not_recorded")
GIVEN_BY: Final = ("subject", "caregiver", "guardian", "legal_representative")

#: Legitimate bases for sharing (ICRC Handbook on Data Protection in Humanitarian Action; UNHCR
#: data-protection policy):
#: - consent: the person (or the caregiver of a child) agreed to this referral;
#: - vital_interest: sharing is needed to protect the life, integrity, health or security of the
#:   person and consent cannot be obtained in time;
#: - best_interests_of_child: a child-protection case worker decided, under a best interests
#:   procedure, that the referral serves the child, with or without parental consent (also
#:   waives the caregiver requirement, since the caregiver may be the source of harm);
#: - legal_obligation: a law of the referring country requires the sharing;
#: - public_interest: sharing is necessary for the organisation's protection mandate.
#: A basis other than consent without granted consent needs `Consent.attested_by` (see
#: protocol.consent).
LEGAL_BASES: Final = (
    "consent",
    "vital_interest",
    "best_interests_of_child",
    "legal_obligation",
    "public_interest",
)

#: Coarse, content-free categories the hub may count (see `monitoring_fields`); the same list as
#: the envelope's `meta.category` (SPEC section 4.1).
MONITORING_CATEGORIES: Final = (
    "sgbv",
    "child_protection",
    "trafficking",
    "lgbti",
    "health",
    "legal",
    "basic_needs",
    "other",
)

ATTACHMENT_MAX_BYTES: Final = 1024 * 1024
ATTACHMENTS_TOTAL_MAX_BYTES: Final = 4 * 1024 * 1024
#: Longest base64 text that can decode to ATTACHMENT_MAX_BYTES (checked before decoding).
_ATTACHMENT_MAX_B64: Final = 4 * ((ATTACHMENT_MAX_BYTES + 2) // 3)
ADULT_AGE: Final = 18

# --------------------------------------------------------------------------------------------
# Field types
# --------------------------------------------------------------------------------------------

_WIRE = "wire"


def _is_wire(info: ValidationInfo) -> bool:
    ctx = info.context
    return isinstance(ctx, Mapping) and bool(ctx.get(_WIRE))


def _rule(kind: str, message: str, field: str | None = None) -> PydanticCustomError:
    """A validation error with our own text; `field` (relative to the model) extends the path."""
    return PydanticCustomError(kind, message, {"field": field} if field else None)


# Character classes: C0/C1 control characters are never allowed; multi-line text may contain
# tab, line feed and carriage return.
_CTRL = r"\x00-\x1f\x7f-\x9f"
_CTRL_TEXT = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
_LINE_PATTERN = rf"^[^{_CTRL}]*[^\s{_CTRL}][^{_CTRL}]*$"
_TEXT_PATTERN = rf"^[^{_CTRL_TEXT}]*[^\s{_CTRL_TEXT}][^{_CTRL_TEXT}]*$"

#: One line of text (names, labels): 1..200 characters, not blank, no control characters.
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=_LINE_PATTERN)]


#: Multi-line free text of bounded length (tab, CR and LF allowed; not blank).
Text500 = Annotated[str, Field(min_length=1, max_length=500, pattern=_TEXT_PATTERN)]
Text1000 = Annotated[str, Field(min_length=1, max_length=1000, pattern=_TEXT_PATTERN)]
Text2000 = Annotated[str, Field(min_length=1, max_length=2000, pattern=_TEXT_PATTERN)]
Text4000 = Annotated[str, Field(min_length=1, max_length=4000, pattern=_TEXT_PATTERN)]

#: Machine codes: `reason_code`, `Problem.code`.
Slug = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
#: Message ids: lowercase RFC 9562 UUID strings (SPEC section 2).
MessageId = Annotated[
    str, Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
]


def _no_double_hyphen(value: str) -> str:
    if "--" in value:
        raise _rule("document_rule", "a node id has no double hyphen")
    return value


#: Node ids (SPEC section 2): lowercase slug of 3-63 characters without "--".
NodeId = Annotated[
    str,
    Field(pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"),
    AfterValidator(_no_double_hyphen),
]
#: base64url (no padding) of a SHA-256 digest: 43 characters, the last one carrying 4 bits.
Digest = Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{42}[AEIMQUYcgkosw048]$")]

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?([Zz]|[+\-][0-9]{2}:[0-9]{2})"
)
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def format_datetime(value: datetime) -> str:
    """The one wire spelling of an instant: RFC 3339 UTC, whole seconds, `Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _datetime_in(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, str):
        if not _RFC3339.fullmatch(value):
            raise _rule(
                "datetime_format",
                "must be an RFC 3339 date-time with a Z or +hh:mm offset",
            )
        return value
    if _is_wire(info) or not isinstance(value, datetime):
        raise _rule("datetime_type", "must be an RFC 3339 date-time string")
    return value


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise _rule("datetime_naive", "must carry a time zone offset")
    return value.astimezone(UTC).replace(microsecond=0)


#: Timezone-aware instant, held in UTC to the second, written as RFC 3339 with `Z`.
UtcDateTime = Annotated[
    datetime,
    BeforeValidator(_datetime_in),
    AfterValidator(_utc),
    PlainSerializer(format_datetime, return_type=str, when_used="json"),
]


def _date_in(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, str):
        if not _ISO_DATE.fullmatch(value):
            raise _rule("date_format", "must be a date written YYYY-MM-DD")
        return value
    if _is_wire(info) or not isinstance(value, date) or isinstance(value, datetime):
        raise _rule("date_type", "must be a date string YYYY-MM-DD")
    return value


WireDate = Annotated[date, BeforeValidator(_date_in)]


def _member_of(table: str, message: str, *, exclude: str = "") -> Any:
    allowed = vocab.ids(table) - {exclude}

    def check(value: str) -> str:
        if value not in allowed:
            raise _rule("unknown_code", message)
        return value

    return check


def _enum(table: str, *, exclude: str = "") -> dict[str, Any]:
    """JSON Schema of a vocabulary code: the ids as an enum, so other implementations see them."""
    return {"type": "string", "enum": sorted(vocab.ids(table) - {exclude})}


ServiceId = Annotated[
    str,
    AfterValidator(_member_of("services", "not a service id of the rssn.services vocabulary")),
    WithJsonSchema(_enum("services")),
]
ConcernId = Annotated[
    str,
    AfterValidator(_member_of("concerns", "not a concern id of the rssn.concerns vocabulary")),
    WithJsonSchema(_enum("concerns")),
]
#: Nationality: ISO 3166-1 alpha-2 or XX (stateless).
NationalityCode = Annotated[
    str,
    AfterValidator(_member_of("countries", "not an ISO 3166-1 alpha-2 code (or XX for stateless)")),
    WithJsonSchema(_enum("countries")),
]
#: A place: ISO 3166-1 alpha-2, never XX.
CountryCode = Annotated[
    str,
    AfterValidator(_member_of("countries", "not an ISO 3166-1 alpha-2 code", exclude="XX")),
    WithJsonSchema(_enum("countries", exclude="XX")),
]
LanguageCode = Annotated[
    str,
    AfterValidator(
        _member_of(
            "languages",
            "not a known language code (ISO 639-1, or ISO 639-3 where no two-letter code exists)",
        )
    ),
    WithJsonSchema(_enum("languages")),
]


def _unique(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise _rule("duplicate", "contains duplicate entries")
    return values


Age = Annotated[StrictInt, Field(ge=0, le=120)]
Latitude = Annotated[StrictFloat, Field(ge=-90, le=90)]
Longitude = Annotated[StrictFloat, Field(ge=-180, le=180)]

# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class _Body(BaseModel):
    """Shared configuration: unknown members refused, instances immutable, inputs never echoed."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class Identifier(_Body):
    """An id of the subject in another system, e.g. {"system": "unhcr_individual", ...}.

    Suggested systems: unhcr_individual, unhcr_registration_group (proGres), primero_case,
    national_id_<cc> (cc = ISO 3166-1 alpha-2, lower case), passport_<cc>, <org>_case.
    """

    system: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/\-]{0,99}$")]
    value: Name


class SafeContact(_Body):
    """How the receiving organisation may contact the person without putting them at risk."""

    method: Literal[
        "phone",
        "sms",
        "whatsapp",
        "signal",
        "telegram",
        "email",
        "in_person",
        "through_referrer",
        "other",
    ]
    value: Name | None = None
    #: e.g. "only after 18:00", "do not leave messages", "say you are calling from the clinic".
    notes: Text1000 | None = None


class Location(_Body):
    """Where the person is now. admin1/admin2 may be names or HXL P-codes."""

    country: CountryCode
    admin1: Name | None = None
    admin2: Name | None = None
    place: Name | None = None
    lat: Latitude | None = None
    lon: Longitude | None = None

    @model_validator(mode="after")
    def _both_coordinates(self) -> Location:
        if (self.lat is None) != (self.lon is None):
            raise _rule(
                "document_rule", "lat and lon go together", "lon" if self.lon is None else "lat"
            )
        return self


class Subject(_Body):
    """The person referred. At least one of date_of_birth and age is required."""

    given_name: Name
    family_name: Name | None = None
    other_names: Annotated[list[Name], Field(max_length=10)] = []
    sex: Literal["female", "male", "intersex", "unknown"]
    gender_identity: Name | None = None
    date_of_birth: WireDate | None = None
    age: Age | None = None
    #: The date of birth or age is an estimate (common for people without documents).
    age_estimated: StrictBool = False
    #: ISO 3166-1 alpha-2; XX = stateless; empty = unknown.
    nationality: Annotated[list[NationalityCode], Field(max_length=5), AfterValidator(_unique)] = []
    #: ISO 639 codes of the languages the person speaks, preferred first.
    languages: Annotated[list[LanguageCode], Field(max_length=10), AfterValidator(_unique)] = []
    safe_contact: SafeContact | None = None
    location: Location | None = None
    identifiers: Annotated[list[Identifier], Field(max_length=20)] = []

    @model_validator(mode="after")
    def _dob_or_age(self) -> Subject:
        if self.date_of_birth is None and self.age is None:
            raise _rule("document_rule", "date_of_birth or age is required", "age")
        if self.date_of_birth is not None and self.date_of_birth < date(1900, 1, 1):
            raise _rule("document_rule", "date_of_birth is before 1900", "date_of_birth")
        if len({(i.system, i.value) for i in self.identifiers}) != len(self.identifiers):
            raise _rule("duplicate", "contains duplicate entries", "identifiers")
        return self

    def age_on(self, day: date) -> int | None:
        """Age in whole years on `day`: from date_of_birth when known, else the stated age."""
        dob = self.date_of_birth
        if dob is None:
            return self.age
        return day.year - dob.year - ((day.month, day.day) < (dob.month, dob.day))

    def is_minor_on(self, day: date) -> bool:
        """Under 18 by the stated age or by the date of birth on `day` (either one suffices).

        Why either: when the two disagree, treating the person as a child is the safe error.
        """
        by_age = self.age is not None and self.age < ADULT_AGE
        by_dob = self.date_of_birth is not None and (self.age_on(day) or 0) < ADULT_AGE
        return by_age or by_dob


class Caregiver(_Body):
    """Primary caregiver of a child (inter-agency referral form, "if a minor")."""

    given_name: Name
    family_name: Name | None = None
    relationship: Literal[
        "mother",
        "father",
        "grandparent",
        "sibling",
        "other_relative",
        "foster_carer",
        "legal_guardian",
        "institution",
        "other",
    ]
    contact: SafeContact | None = None
    #: The caregiver knows about this referral (the form asks, and why not if not).
    informed_of_referral: StrictBool | None = None
    notes: Text1000 | None = None


class ConsentScope(_Body):
    """Who may receive the referral. Absent scope: any network member for the requested services.

    A recipient is in scope when its node id is in `recipients` or its organisation name is in
    `organizations` (compared case-insensitively); when both lists are empty only `purposes`
    restrict the sharing.
    """

    recipients: Annotated[list[NodeId], Field(max_length=50), AfterValidator(_unique)] = []
    organizations: Annotated[list[Name], Field(max_length=50)] = []
    purposes: Annotated[list[Name], Field(max_length=20)] = []

    @model_validator(mode="after")
    def _not_empty(self) -> ConsentScope:
        if not (self.recipients or self.organizations or self.purposes):
            raise _rule(
                "document_rule", "scope names no recipient, organization or purpose", "recipients"
            )
        return self


class Consent(_Body):
    """The consent record (or other legal basis) that permits this referral."""

    #: not_recorded: the source system holds no consent record; the referral rests on another
    #: legal basis, attested by a named person (adapters set this, never a silent "granted").
    status: Literal["granted", "withdrawn", "refused", "not_recorded"]
    given_by: Literal["subject", "caregiver", "guardian", "legal_representative"]
    obtained_at: UtcDateTime
    legal_basis: Literal[
        "consent",
        "vital_interest",
        "best_interests_of_child",
        "legal_obligation",
        "public_interest",
    ]
    scope: ConsentScope | None = None
    #: e.g. "do not share with police", "no contact with family".
    restrictions: Annotated[list[Text1000], Field(max_length=20)] = []
    expires_at: UtcDateTime | None = None
    #: Who (name and role) attests a legal basis other than consent when consent is not granted.
    attested_by: Name | None = None
    #: For a child: the child's own assent was sought and given (True) or not (False).
    child_assent: StrictBool | None = None

    @model_validator(mode="after")
    def _expiry_after_obtained(self) -> Consent:
        if self.expires_at is not None and self.expires_at <= self.obtained_at:
            raise _rule("document_rule", "expires_at is not after obtained_at", "expires_at")
        return self


class Referrer(_Body):
    """The case worker who makes the referral."""

    name: Name
    organization: Name
    position: Name | None = None
    #: Phone or e-mail where the receiving case worker can reach the referrer.
    contact: Name | None = None


def _attachment_content(value: str) -> str:
    if len(value) > _ATTACHMENT_MAX_B64:
        raise _rule("too_large", f"attachment larger than {ATTACHMENT_MAX_BYTES} bytes")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _rule("document_rule", "not padded standard base64") from None
    if base64.b64encode(raw).decode("ascii") != value:
        raise _rule("document_rule", "not canonical base64")
    if not raw:
        raise _rule("document_rule", "attachment is empty")
    if len(raw) > ATTACHMENT_MAX_BYTES:
        raise _rule("too_large", f"attachment larger than {ATTACHMENT_MAX_BYTES} bytes")
    return value


def _filename(value: str) -> str:
    if value in (".", "..") or "/" in value or "\\" in value:
        raise _rule("document_rule", "a file name, not a path")
    return value


class Attachment(_Body):
    """A small file (a signed consent form, a medical note). Media types are an allow-list."""

    filename: Annotated[
        str, Field(min_length=1, max_length=255, pattern=_LINE_PATTERN), AfterValidator(_filename)
    ]
    media_type: Literal[
        "application/pdf",
        "image/jpeg",
        "image/png",
        "image/webp",
        "text/plain",
        "audio/ogg",
        "audio/mpeg",
        "audio/mp4",
        "application/vnd.oasis.opendocument.text",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ]
    content_b64: Annotated[
        str,
        AfterValidator(_attachment_content),
        WithJsonSchema(
            {
                "type": "string",
                "contentEncoding": "base64",
                "maxLength": _ATTACHMENT_MAX_B64,
                "pattern": r"^[A-Za-z0-9+/]*={0,2}$",
            }
        ),
    ]

    @property
    def size(self) -> int:
        """Decoded size in bytes (computed from the base64 length, no decoding)."""
        return len(self.content_b64) * 3 // 4 - self.content_b64[-2:].count("=")

    def content(self) -> bytes:
        return base64.b64decode(self.content_b64)


class ReferralDocument(_Body):
    """A referral (kind `referral`): who, what is needed, why, on which basis, from whom."""

    priority: Literal["urgent", "high", "normal"]
    services: Annotated[
        list[ServiceId], Field(min_length=1, max_length=20), AfterValidator(_unique)
    ]
    concerns: Annotated[list[ConcernId], Field(max_length=20), AfterValidator(_unique)] = []
    subject: Subject
    #: Required when the subject is a child, unless the legal basis is best_interests_of_child.
    caregiver: Caregiver | None = None
    consent: Consent
    reason: Text4000
    #: Risks to the person or to staff: who must not learn of the referral, safe times, etc.
    safety_notes: Text4000 | None = None
    referrer: Referrer
    attachments: Annotated[list[Attachment], Field(max_length=16)] = []

    @model_validator(mode="after")
    def _document_rules(self) -> ReferralDocument:
        total = sum(a.size for a in self.attachments)
        if total > ATTACHMENTS_TOTAL_MAX_BYTES:
            raise _rule(
                "too_large",
                f"attachments larger than {ATTACHMENTS_TOTAL_MAX_BYTES} bytes together",
                "attachments",
            )
        consent_day = self.consent.obtained_at.date()
        dob = self.subject.date_of_birth
        if dob is not None and dob > consent_day:
            raise _rule(
                "document_rule",
                "date_of_birth is after consent.obtained_at",
                "subject.date_of_birth",
            )
        if (
            self.subject.is_minor_on(consent_day)
            and self.caregiver is None
            and self.consent.legal_basis != "best_interests_of_child"
        ):
            raise _rule(
                "document_rule",
                "a child needs a caregiver unless the legal basis is best_interests_of_child",
                "caregiver",
            )
        return self

    @property
    def category(self) -> str:
        """Coarse monitoring category of the first concern ("other" without concerns)."""
        if not self.concerns:
            return "other"
        entry = vocab.concerns()[self.concerns[0]]
        return entry.category if entry.category in MONITORING_CATEGORIES else "other"

    @property
    def subject_is_minor(self) -> bool:
        """The subject was a child when consent was obtained (the document's own clock)."""
        return self.subject.is_minor_on(self.consent.obtained_at.date())


class StatusChange(_Body):
    """Kind `status`: the receiving organisation reports where the referral stands."""

    status: Literal[
        "received", "accepted", "declined", "in_progress", "completed", "cancelled", "failed"
    ]
    at: UtcDateTime
    note: Text2000 | None = None
    #: Machine-readable reason, e.g. "no_capacity", "out_of_area", "subject_unreachable".
    reason_code: Slug | None = None


class Receipt(_Body):
    """Kind `receipt`: proof that the recipient stored a message (by id and envelope digest)."""

    message_id: MessageId
    #: base64url (no padding) SHA-256 of the envelope as received.
    envelope_digest: Digest
    received_at: UtcDateTime


class ConsentWithdrawn(_Body):
    """Kind `consent_withdrawn`: the person withdrew consent; recipients must stop and erase."""

    withdrawn_at: UtcDateTime
    note: Text2000 | None = None


class Problem(_Body):
    """Kind `problem`: a message could not be processed. `detail` never carries personal data."""

    message_id: MessageId
    code: Slug
    detail: Text500


Document = ReferralDocument | StatusChange | Receipt | ConsentWithdrawn | Problem

DOCUMENT_MODELS: Final[Mapping[str, type[BaseModel]]] = MappingProxyType(
    {
        "referral": ReferralDocument,
        "status": StatusChange,
        "receipt": Receipt,
        "consent_withdrawn": ConsentWithdrawn,
        "problem": Problem,
    }
)

# --------------------------------------------------------------------------------------------
# Functions
# --------------------------------------------------------------------------------------------


def kind_of(doc: Document) -> str:
    """The envelope kind of a document."""
    for kind, model in DOCUMENT_MODELS.items():
        if type(doc) is model:
            return kind
    raise TypeError("not a protocol document")


def response_due(priority: str, referred_at: datetime) -> datetime:
    """When the receiving organisation should have responded to a referral of `priority`."""
    return referred_at + PRIORITY_DEADLINES[priority]


# Pydantic messages of these error types are fixed texts that never include the input.
_SAFE_PYDANTIC_TYPES = frozenset(
    {
        "bool_type",
        "date_from_datetime_parsing",
        "date_parsing",
        "date_type",
        "datetime_from_date_parsing",
        "datetime_parsing",
        "datetime_type",
        "dict_type",
        "float_type",
        "int_type",
        "list_type",
        "model_attributes_type",
        "model_type",
        "string_type",
        "timezone_aware",
        "date_future",
        "date_past",
    }
)
_OWN_TYPES = frozenset(
    {
        "document_rule",
        "unknown_code",
        "duplicate",
        "too_large",
        "datetime_format",
        "datetime_type",
        "datetime_naive",
        "date_format",
        "date_type",
    }
)


def _detail(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in _OWN_TYPES:
        text = str(err["msg"])
    elif kind == "missing":
        text = "required member is missing"
    elif kind == "extra_forbidden":
        text = "unknown member"
    elif kind == "string_too_short":
        text = "must not be empty"
    elif kind == "string_too_long":
        text = f"longer than {ctx.get('max_length')} characters"
    elif kind == "too_short":
        text = f"needs at least {ctx.get('min_length')} item(s)"
    elif kind == "too_long":
        text = f"more than {ctx.get('max_length')} items"
    elif kind == "string_pattern_mismatch":
        text = "not in the required format (or contains control characters or only blanks)"
    elif kind == "literal_error":
        text = f"must be one of {ctx.get('expected')}"
    elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        bound = next(iter(ctx.values()), "")
        op = {"greater_than_equal": ">=", "less_than_equal": "<=", "greater_than": ">"}.get(
            kind, "<"
        )
        text = f"must be {op} {bound}"
    elif kind in _SAFE_PYDANTIC_TYPES:
        text = str(err["msg"])
    else:
        text = f"invalid value ({kind})"
    # Belt and braces: never let the input travel back in the text.
    value = err.get("input")
    if isinstance(value, str) and len(value) >= 4 and value in text:
        text = f"invalid value ({kind})"
    return text


def _path(err: Mapping[str, Any]) -> str | None:
    loc = list(err["loc"])
    if err["type"] == "extra_forbidden" and loc:
        loc = loc[:-1]  # the unknown key is input: never echo it
    extra = (err.get("ctx") or {}).get("field")
    if isinstance(extra, str):
        loc.extend(extra.split("."))
    return ".".join(str(p) for p in loc) or None


def _error_from(exc: ValidationError, kind: str) -> ProtocolError:
    errors = exc.errors(include_url=False)
    for err in errors:
        if err["type"] == "too_large":
            return TooLarge(_detail(err), field=_path(err))
    if kind == "referral":
        for err in errors:
            if tuple(err["loc"]) == ("consent",) and (
                err["type"] == "missing" or err.get("input") is None
            ):
                return ConsentMissing("the referral carries no consent record", field="consent")
    err = errors[0]
    return Malformed(_detail(err), field=_path(err))


def parse_document(kind: str, data: object) -> Document:
    """Validate a decoded JSON body of `kind`. Never echoes input in the raised error."""
    model = DOCUMENT_MODELS.get(kind)
    if model is None:
        raise Malformed("unknown document kind", field="kind")
    if not isinstance(data, dict):
        raise Malformed("a document must be a JSON object")
    try:
        doc = model.model_validate(data, context={_WIRE: True})
    except ValidationError as exc:
        raise _error_from(exc, kind) from None
    assert isinstance(doc, ReferralDocument | StatusChange | Receipt | ConsentWithdrawn | Problem)
    return doc


def parse_referral(data: object) -> ReferralDocument:
    """`parse_document("referral", data)`, typed for callers that only handle referrals."""
    doc = parse_document("referral", data)
    assert isinstance(doc, ReferralDocument)
    return doc


def document_to_json(doc: Document) -> dict[str, Any]:
    """The normal form: JSON-ready, instants as RFC 3339 `Z` strings, defaults left out."""
    return doc.model_dump(mode="json", exclude_defaults=True)


def monitoring_fields(doc: ReferralDocument) -> dict[str, str]:
    """The only facts about a referral's content that may leave the encrypted body.

    Both are coarse on purpose: the priority and one of MONITORING_CATEGORIES. No service, no
    concern id, no place, no age: those combined could single a person out.
    """
    return {"priority": doc.priority, "category": doc.category}
