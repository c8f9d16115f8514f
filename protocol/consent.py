"""Consent enforcement: may this referral be shared with this recipient now?

Why a separate, pure function: consent is enforced at both ends. The sending node checks before it
seals a referral, the receiving node checks again after it opens one (and refuses with
`consent_missing`), and both must apply the very same rule with the clock passed in.

The rule (`check_consent` raises ConsentMissing on the first failed point; `field` says which):

1. Basis. `consent.status == "granted"` passes. Otherwise (withdrawn, refused, not_recorded):
   - with legal_basis `consent` the referral may not be shared at all;
   - with another legal basis (vital_interest, best_interests_of_child, legal_obligation,
     public_interest) it may, but only when `consent.attested_by` names who takes responsibility
     for that decision (for example a child-protection officer after a best interests procedure).
2. Not from the future: `consent.obtained_at` may be at most CLOCK_SKEW (5 minutes) after `now`.
3. Not expired: when `consent.expires_at` is set it must be later than `now`.
4. Scope. No scope means any member of the network for the requested services. With a scope
   that lists recipients or organizations, the recipient's node id must be in `recipients` or
   its organisation in `organizations` (names compared ignoring case, accents and repeated
   spaces). A scope that lists only purposes does not restrict recipients.

`consent.restrictions` are instructions to people ("do not contact the family") and are not
machine-checked here. A consent_withdrawn message is handled by the lifecycle, not here.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta
from typing import Final

from .documents import ConsentScope, ReferralDocument
from .errors import ConsentMissing

__all__ = ["CLOCK_SKEW", "check_consent", "in_scope", "normalize_org"]

#: How far in the future `obtained_at` may lie: clocks of field laptops drift.
CLOCK_SKEW: Final = timedelta(minutes=5)


def normalize_org(name: str) -> str:
    """Comparison key for organisation names: "Asociación  Sin Fronteras" ~ "asociacion sin
    fronteras"."""
    decomposed = unicodedata.normalize("NFKD", name)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(bare.casefold().split())


def in_scope(scope: ConsentScope | None, recipient_node: str, recipient_org: str | None) -> bool:
    """True when the consent scope allows this recipient (rule 4 of the module docstring)."""
    if scope is None or not (scope.recipients or scope.organizations):
        return True
    if recipient_node in scope.recipients:
        return True
    if recipient_org is None:
        return False
    wanted = normalize_org(recipient_org)
    return any(normalize_org(org) == wanted for org in scope.organizations)


def check_consent(
    doc: ReferralDocument,
    *,
    recipient_node: str,
    recipient_org: str | None,
    now: datetime,
) -> None:
    """Raise ConsentMissing unless `doc` may be shared with the recipient at `now`.

    `now` must be timezone-aware (a naive clock is a programming error: ValueError).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    consent = doc.consent
    if consent.status != "granted":
        if consent.legal_basis == "consent":
            raise ConsentMissing(f"consent is {consent.status}", field="consent.status")
        if consent.attested_by is None:
            raise ConsentMissing(
                "a legal basis other than consent, without granted consent, needs attested_by",
                field="consent.attested_by",
            )
    if consent.obtained_at > now + CLOCK_SKEW:
        raise ConsentMissing("consent is dated in the future", field="consent.obtained_at")
    if consent.expires_at is not None and consent.expires_at <= now:
        raise ConsentMissing("consent has expired", field="consent.expires_at")
    if not in_scope(consent.scope, recipient_node, recipient_org):
        raise ConsentMissing("the recipient is outside the consent scope", field="consent.scope")
