"""protocol.consent.check_consent: the sharing rule enforced by sender and receiver alike."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.consent import CLOCK_SKEW, check_consent, in_scope, normalize_org
from protocol.documents import ConsentScope, ReferralDocument, parse_document
from protocol.errors import ConsentMissing
from tests.strategies import SHAREABLE_FROM, SHAREABLE_UNTIL, node_ids, referral_documents

OBTAINED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
NODE, ORG = "legal-aid-gt", "Asociación Sin Fronteras"

BASE: dict[str, Any] = {
    "priority": "urgent",
    "services": ["gbv_response", "safe_shelter"],
    "concerns": ["sgbv_survivor"],
    "subject": {"given_name": "María José", "family_name": "Quispe", "sex": "female", "age": 24},
    "consent": {
        "status": "granted",
        "given_by": "subject",
        "obtained_at": "2026-11-20T10:00:00Z",
        "legal_basis": "consent",
    },
    "reason": "Necesita albergue seguro esta noche.",
    "referrer": {"name": "Trabajadora social", "organization": "Casa del Migrante"},
}


def referral(**consent: Any) -> ReferralDocument:
    doc = copy.deepcopy(BASE)
    doc["consent"].update(consent)
    parsed = parse_document("referral", doc)
    assert isinstance(parsed, ReferralDocument)
    return parsed


def check(doc: ReferralDocument, *, node: str = NODE, org: str | None = ORG,
          now: datetime = NOW) -> None:
    check_consent(doc, recipient_node=node, recipient_org=org, now=now)


def refused(doc: ReferralDocument, field: str, **kw: Any) -> None:
    with pytest.raises(ConsentMissing) as exc:
        check(doc, **kw)
    assert exc.value.field == field
    assert exc.value.code == "consent_missing"


def test_granted_consent_without_scope_allows_any_member() -> None:
    check(referral())
    check(referral(), node="unhcr-cr", org=None)


@pytest.mark.parametrize("status", ["withdrawn", "refused", "not_recorded"])
def test_consent_basis_needs_granted_status(status: str) -> None:
    refused(referral(status=status), "consent.status")
    # An attestation does not replace the person's own refusal when the basis is consent.
    refused(referral(status=status, attested_by="Coordinadora"), "consent.status")


@pytest.mark.parametrize(
    "basis", ["vital_interest", "best_interests_of_child", "legal_obligation", "public_interest"]
)
def test_other_legal_bases_need_an_attestation_without_granted_consent(basis: str) -> None:
    refused(referral(status="refused", legal_basis=basis), "consent.attested_by")
    check(referral(status="refused", legal_basis=basis,
                   attested_by="Oficial de protección, procedimiento de interés superior"))
    # With consent granted the basis needs no attestation.
    check(referral(legal_basis=basis))


def test_expiry() -> None:
    doc = referral(expires_at="2026-12-01T00:00:00Z")
    check(doc)
    check(doc, now=datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC))
    refused(doc, "consent.expires_at", now=datetime(2026, 12, 1, tzinfo=UTC))
    refused(doc, "consent.expires_at", now=datetime(2027, 1, 1, tzinfo=UTC))


def test_obtained_in_the_future_allows_five_minutes_of_skew() -> None:
    doc = referral()
    check(doc, now=OBTAINED - CLOCK_SKEW)
    refused(doc, "consent.obtained_at", now=OBTAINED - CLOCK_SKEW - timedelta(seconds=1))
    assert timedelta(minutes=5) == CLOCK_SKEW


def test_scope_by_node() -> None:
    doc = referral(scope={"recipients": ["legal-aid-gt", "unhcr-cr"]})
    check(doc, org=None)
    check(doc, node="unhcr-cr", org="Anything")
    refused(doc, "consent.scope", node="shelter-mx", org="Casa Refugio")


def test_scope_by_organisation_ignores_case_accents_and_spaces() -> None:
    doc = referral(scope={"organizations": ["Asociación Sin Fronteras"]})
    check(doc)
    check(doc, node="other-node", org="  asociacion   SIN fronteras ")
    refused(doc, "consent.scope", node="other-node", org="Sin Fronteras")
    refused(doc, "consent.scope", node="other-node", org=None)
    assert normalize_org("Ñandutí  Org") == "nanduti org"


def test_scope_with_only_purposes_does_not_restrict_recipients() -> None:
    doc = referral(scope={"purposes": ["service_provision"]})
    check(doc, node="anyone", org=None)
    assert in_scope(None, "anyone", None)
    assert not in_scope(ConsentScope(recipients=["a-b"]), "anyone", None)


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError):
        check(referral(), now=datetime(2026, 11, 28, 12, 0))


def test_status_failure_is_reported_before_time_and_scope() -> None:
    doc = referral(status="withdrawn", expires_at="2026-11-21T00:00:00Z",
                   scope={"recipients": ["someone-else"]})
    refused(doc, "consent.status")


def test_errors_carry_no_personal_data() -> None:
    doc = referral(scope={"organizations": ["Refugio Secreto de María"]})
    with pytest.raises(ConsentMissing) as exc:
        check(doc, node="x-node", org="Otra Organización María")
    assert "María" not in str(exc.value.to_problem())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc=referral_documents(),
    node=node_ids(),
    offset=st.integers(0, int((SHAREABLE_UNTIL - SHAREABLE_FROM).total_seconds()) - 1),
)
def test_shareable_strategy_documents_pass(doc: dict[str, Any], node: str, offset: int) -> None:
    parsed = parse_document("referral", doc)
    assert isinstance(parsed, ReferralDocument)
    check(parsed, node=node, org=None, now=SHAREABLE_FROM + timedelta(seconds=offset))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=referral_documents(shareable=False), node=node_ids())
def test_rule_matches_its_specification(doc: dict[str, Any], node: str) -> None:
    """An independent restatement of SPEC section 8 against the implementation."""
    parsed = parse_document("referral", doc)
    assert isinstance(parsed, ReferralDocument)
    c = parsed.consent
    basis_ok = c.status == "granted" or (c.legal_basis != "consent" and c.attested_by is not None)
    time_ok = c.obtained_at <= NOW + timedelta(minutes=5) and (
        c.expires_at is None or NOW < c.expires_at
    )
    scope_ok = (
        c.scope is None
        or not (c.scope.recipients or c.scope.organizations)
        or node in c.scope.recipients
    )
    expected = basis_ok and time_ok and scope_ok
    try:
        check(parsed, node=node, org=None)
    except ConsentMissing:
        assert not expected
    else:
        assert expected


def test_no_consent_record_is_shareable_only_on_an_attested_other_basis() -> None:
    refused(referral(status="not_recorded", legal_basis="vital_interest"), "consent.attested_by")
    check(referral(status="not_recorded", legal_basis="vital_interest", attested_by="Jefa de oficina"))
