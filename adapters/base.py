"""The adapter interface and the conversion report.

Why: a partner must be able to add a case system without touching node/ or hub/.
An adapter is three things: a mapping loader (configuration, validated on load),
a reader (thin I/O that yields raw source records) and a pure converter that
turns one source record into referral documents or refuses with a reason.

Failing closed is the point: the Primero<->proGres middlewares defaulted unknown
service types, read unknown status codes as "accepted" and put an administrator's
details where the caseworker's were missing. Here every value either maps through
configuration or the record is refused with (source id, field, code, reason).
Reasons carry field names and option codes, never names or other personal values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

__all__ = [
    "Adapter",
    "ConvertOptions",
    "Converted",
    "InputError",
    "MappingError",
    "Outcome",
    "RecordRejected",
    "Rejection",
    "Skipped",
    "SourceRecord",
]

# Stable report codes (the `code` column of a report). Never rename, only add.
MISSING = "missing_field"
UNKNOWN_OPTION = "unknown_option"
MALFORMED = "malformed_value"
CONSENT = "consent_missing"
CONFLICT = "conflicting_rows"
INVALID = "invalid_document"
NO_REFERRAL = "no_referral"


class InputError(Exception):
    """The input as a whole is unusable (exit 2): unreadable, not JSON, wrong shape."""

    def __init__(self, path: str | Path, detail: str, *, line: int | None = None,
                 column: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.column = column
        self.detail = detail
        where = self.path
        if line is not None:
            where += f":{line}" + (f":{column}" if column is not None else "")
        super().__init__(f"{where}: {detail}")


class MappingError(Exception):
    """A mapping file is unusable (exit 2). `problems` lists every error found, not only the first."""

    def __init__(self, path: str | Path, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        super().__init__(f"{self.path}: invalid mapping:\n  " + "\n  ".join(problems))


class RecordRejected(Exception):
    """Raised by pure converters: this record (or unit) cannot be converted, and why.

    `reason` must not contain personal data: field names, option ids and codes only.
    """

    def __init__(self, field: str, code: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One raw record as read from a source, with an id that names it in the report."""

    source_id: str
    data: dict[str, Any]
    #: where in the input it came from ("row 12", "Data[3]"), for humans reading the report
    position: str = ""


@dataclass(frozen=True, slots=True)
class Converted:
    """One referral document (JSON-ready dict, already validated by the protocol)."""

    source_id: str
    document: dict[str, Any]
    #: system ids the write-back needs (Primero record id, service unique_id, ...)
    refs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rejection:
    source_id: str
    field: str
    code: str
    reason: str

    def row(self) -> dict[str, str]:
        return {"source_id": self.source_id, "field": self.field, "code": self.code,
                "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Skipped:
    """A record that is not a referral at all (e.g. a Primero case with no network service).

    Reported so nothing disappears silently, but it does not make the run fail.
    """

    source_id: str
    reason: str

    def row(self) -> dict[str, str]:
        return {"source_id": self.source_id, "field": "", "code": NO_REFERRAL,
                "reason": self.reason}


Outcome = Converted | Rejection | Skipped


@dataclass(frozen=True, slots=True)
class ConvertOptions:
    """Operator statements that the source cannot carry.

    `legal_basis` + `attested_by`: for sources with no consent record (proGres,
    some spreadsheets), the operator states the basis for sharing and who attests
    it; both are then recorded in the referral. Without them such records refuse.
    """

    legal_basis: str | None = None
    attested_by: str | None = None
    #: ISO-8601 instant used as the attestation time (injected for determinism in tests)
    attested_at: str | None = None


@runtime_checkable
class Adapter(Protocol):
    """What an entry point in the `rssn.adapters` group must provide."""

    name: ClassVar[str]
    description: ClassVar[str]
    #: input formats `read` accepts, for `rssn-node adapters`
    formats: ClassVar[tuple[str, ...]]

    def load_mapping(self, path: Path | None) -> Any:
        """Load and validate the mapping (default when `path` is None); raise MappingError."""
        ...

    def read(self, path: Path, mapping: Any) -> Iterator[SourceRecord]:
        """Yield raw records from a file; raise InputError when the file is unusable."""
        ...

    def convert(self, record: SourceRecord, mapping: Any,
                options: ConvertOptions) -> list[Outcome]:
        """Pure: one source record to outcomes. Never raises for a bad record."""
        ...


def safe_outcomes(source_id: str, units: Iterable[Outcome]) -> list[Outcome]:
    """Collect outcomes; an unexpected exception becomes a rejection, never a crash of the run."""
    out: list[Outcome] = []
    try:
        out.extend(units)
    except RecordRejected as exc:
        out.append(Rejection(source_id, exc.field, exc.code, exc.reason))
    except Exception as exc:  # a converter bug must not leak values or abort the batch
        out.append(Rejection(source_id, "", "internal_error",
                             f"converter error {type(exc).__name__}"))
    return out


def rejection(source_id: str, exc: RecordRejected) -> Rejection:
    return Rejection(source_id, exc.field, exc.code, exc.reason)
