"""Fictional referral documents for the demo and tests (no real person is described).

Why in the package: `make demo` must work on a fresh clone with nothing else, and tests
and the demo should exercise the very same, valid documents.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["sample_referral"]

_SUBJECTS = [
    ("Ana", "female", 27, "HN", ["sgbv_survivor"], ["gbv_response", "safe_shelter"], "high"),
    ("Luis", "male", 34, "SV", ["threat_by_organized_crime"], ["legal_aid", "asylum_registration"],
     "normal"),
    ("María", "female", 19, "VE", ["trafficking_victim"], ["anti_trafficking", "medical_care"],
     "urgent"),
    ("José", "male", 41, "NI", ["legal_protection_need"], ["legal_aid", "documentation"], "normal"),
    ("Karla", "female", 23, "HN", ["lgbti_at_risk"], ["lgbti_support", "mental_health_psychosocial"],
     "high"),
]


def sample_referral(
    n: int = 0,
    *,
    organization: str = "Demo Shelter",
    consent_status: str = "granted",
    recipients: list[str] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A valid ReferralDocument as JSON; `n` picks one of a few fictional people."""
    name, sex, age, nat, concerns, services, priority = _SUBJECTS[n % len(_SUBJECTS)]
    obtained = (now or datetime.now(UTC)).replace(microsecond=0)
    consent: dict[str, Any] = {
        "status": consent_status,
        "given_by": "subject",
        "obtained_at": obtained.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "legal_basis": "consent",
    }
    if recipients:
        consent["scope"] = {"recipients": recipients}
    return {
        "priority": priority,
        "services": services,
        "concerns": concerns,
        "subject": {
            "given_name": f"{name} (fictional {n})",
            "sex": sex,
            "age": age,
            "nationality": [nat],
            "languages": ["es"],
        },
        "consent": consent,
        "reason": "Fictional demo referral: needs the listed services after crossing the border.",
        "referrer": {"name": "Demo Caseworker", "organization": organization},
    }
