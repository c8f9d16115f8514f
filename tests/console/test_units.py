"""Console pieces without a server: HSDS rules, deadline folding, exports, i18n, map data."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.console import exports, hsds, i18n, monitor
from hub.console.charts import bar_chart, funnel_chart, line_chart
from hub.console.passwords import hash_password, verify_password
from tests.console.scenario import hsds_document

CONSOLE = Path(__file__).resolve().parents[2] / "hub" / "console"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


# --- HSDS -----------------------------------------------------------------------------------


def _doc() -> dict:
    return hsds_document("Org", "GT", (14.6, -90.5), "Guatemala", "legal_aid", "everyone")


def test_hsds_accepts_the_three_forms_and_normalises_them_alike() -> None:
    doc = _doc()
    flat = hsds.normalize(doc)
    nested_org = dict(doc["organization"])
    svc = dict(doc["services"][0])
    sal = dict(doc["service_at_locations"][0])
    sal["location"] = doc["locations"][0]
    del sal["location_id"], sal["service_id"]
    svc["service_at_locations"] = [sal]
    nested_org["services"] = [svc]
    assert hsds.normalize(nested_org) == flat
    exported = hsds.export_services(flat)
    assert hsds.normalize(exported) == flat  # export -> import round trip
    assert exported[0]["organization"]["id"] == doc["organization"]["id"]
    assert exported[0]["service_at_locations"][0]["location"]["latitude"] == 14.6


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda d: d["organization"].pop("description"), "$.organization.description: is required"),
        (lambda d: d["services"][0].update(id="svc-1"), "$.services[0].id: must be a UUID"),
        (lambda d: d["services"][0].update(status="open"), "$.services[0].status: must be one of"),
        (lambda d: d["locations"][0].update(latitude=123.0), "$.locations[0].latitude"),
        (lambda d: d["locations"][0].update(location_type="home"), "$.locations[0].location_type"),
        (lambda d: d["locations"][0]["addresses"][0].update(country="Guatemala"),
         "$.locations[0].addresses[0].country"),
        (lambda d: d["service_at_locations"][0].update(location_id=str(uuid.uuid4())),
         "$.service_at_locations[0].location_id: must name a location"),
        (lambda d: d["services"][0]["attributes"][0]["taxonomy_term"].update(code="spa_day"),
         "taxonomy_term.code: must be a service type"),
        (lambda d: d["services"][0].update(organization_id=str(uuid.uuid4())),
         "$.services[0].organization_id: must be the organization's id"),
    ],
)
def test_hsds_refuses_with_paths_not_values(mutate, error) -> None:  # type: ignore[no-untyped-def]
    doc = _doc()
    mutate(doc)
    with pytest.raises(hsds.HsdsError) as exc:
        hsds.normalize(doc)
    assert any(e.startswith(error) or error in e for e in exc.value.errors), exc.value.errors
    assert "Guatemala" not in " ".join(exc.value.errors)
    assert "spa_day" not in " ".join(exc.value.errors)


def test_hsds_example_file_is_valid() -> None:
    doc = json.loads((CONSOLE / "examples" / "services.example.json").read_text())
    norm = hsds.normalize(doc)
    rows = hsds.summarize_services(norm, node_id="gt-x", node_country="GT")
    assert rows and all(r["service_types"] and r["populations"] for r in rows)


# --- monitoring folds -----------------------------------------------------------------------


def _ev(kind: str, sender: str, recipient: str, at: datetime, status: str | None = None,
        priority: str | None = None) -> monitor.Event:
    return monitor.Event(str(uuid.uuid4()), kind, sender, recipient, status, priority, "sgbv",
                         2048, at, at + timedelta(minutes=1), None)


NODES = {
    "a": monitor.NodeInfo("a", "Org A", "GT", "active", None, None, None, None),
    "b": monitor.NodeInfo("b", "Org B", "MX", "active", None, None, None, None),
}


@pytest.mark.parametrize(
    ("priority", "age", "answer_after", "state"),
    [
        ("urgent", timedelta(hours=25), None, "overdue"),
        ("urgent", timedelta(hours=20), None, "due_soon"),
        ("urgent", timedelta(hours=2), None, "on_track"),
        ("high", timedelta(hours=71), None, "due_soon"),
        ("high", timedelta(hours=73), None, "overdue"),
        ("normal", timedelta(days=10), None, "on_track"),
        ("normal", timedelta(days=13), None, "due_soon"),
        ("normal", timedelta(days=15), None, "overdue"),
        ("urgent", timedelta(days=3), timedelta(hours=30), "late"),
        ("urgent", timedelta(days=3), timedelta(hours=3), "met"),
        (None, timedelta(days=15), None, "overdue"),  # no priority: the normal deadline
    ],
)
def test_deadline_states(priority, age, answer_after, state) -> None:  # type: ignore[no-untyped-def]
    sent = NOW - age
    events = [_ev("referral", "a", "b", sent, priority=priority)]
    if answer_after is not None:
        events.append(_ev("status", "b", "a", sent + answer_after, status="accepted"))
    r = monitor.fold("t", events, NODES, NOW)
    assert r is not None and r.deadline_state == state


def test_fold_statuses_times_and_failure() -> None:
    sent = NOW - timedelta(days=3)
    events = [
        _ev("referral", "a", "b", sent, priority="high"),
        _ev("receipt", "b", "a", sent + timedelta(hours=1)),
        _ev("status", "b", "a", sent + timedelta(hours=5), status="accepted"),
        _ev("status", "b", "a", sent + timedelta(hours=6), status="in_progress"),
        _ev("status", "b", "a", sent + timedelta(days=2), status="completed"),
    ]
    r = monitor.fold("t", events, NODES, NOW)
    assert r is not None
    assert (r.status, r.sender_country, r.recipient_country) == ("completed", "GT", "MX")
    assert r.received_at == sent + timedelta(hours=1)
    assert r.accepted_at == sent + timedelta(hours=5)
    assert r.completed_at == sent + timedelta(days=2)
    assert all(r.reached(s) for s in monitor.FUNNEL)
    ov = monitor.overview([r], NOW)
    assert ov["medians"]["receipt"] == 1.0 and ov["medians"]["completion"] == 48.0
    # An envelope that expired undelivered is a failed referral, not an overdue one.
    lost = _ev("referral", "a", "b", NOW - timedelta(days=20), priority="normal")
    lost.delivered_at, lost.expired_at = None, NOW - timedelta(days=6)
    r2 = monitor.fold("t2", [lost], NODES, NOW)
    assert r2 is not None and (r2.status, r2.deadline_state) == ("failed", "closed")
    # A thread without its referral message is not a referral.
    assert monitor.fold("t3", [events[2]], NODES, NOW) is None


def test_scope_and_filters() -> None:
    r = monitor.fold("t", [_ev("referral", "a", "b", NOW, priority="high")], NODES, NOW)
    assert r is not None
    assert monitor.Scope(frozenset({"GT"})).sees(r.sender_country, r.recipient_country)
    assert not monitor.Scope(frozenset({"CR"})).sees(r.sender_country, r.recipient_country)
    assert monitor.filter_referrals([r], {"to_country": "MX", "priority": "high"}) == [r]
    assert monitor.filter_referrals([r], {"from_country": "MX"}) == []


# --- exports --------------------------------------------------------------------------------


def test_suppression_and_formula_injection() -> None:
    assert exports.suppress(0, 5) == 0
    assert exports.suppress(4, 5) == "<5"
    assert exports.suppress(5, 5) == 5
    assert exports.suppress(1, 0) == 1
    t = exports.Table("x", ["org"], ["#org+name"], [["=HYPERLINK(\"x\")"], ["-1"]])
    import csv
    import io

    rows = list(csv.reader(io.StringIO(exports.to_csv(t).decode("utf-8-sig"))))
    assert rows == [["org"], ["#org+name"], ["'=HYPERLINK(\"x\")"], ["'-1"]]


# --- i18n, charts, map data, passwords --------------------------------------------------------


def test_every_template_string_has_a_spanish_translation() -> None:
    pattern = re.compile(r"""_\(\s*"([^"]+)"\s*\)|_\(\s*'([^']+)'\s*\)""")
    missing = set()
    sources = [*list((CONSOLE / "templates").glob("*.html")), CONSOLE / "routes.py"]
    for path in sources:
        for m in pattern.finditer(path.read_text(encoding="utf-8")):
            text = m.group(1) or m.group(2)
            if text not in i18n.ES:
                missing.add(text)
    for code in (*monitor.STATUSES, *monitor.PRIORITIES, *monitor.DEADLINE_STATES, "ok", "late",
                 "down", "never", "revoked", "expiring", "expired", *hsds.POPULATIONS.values(),
                 "Forbidden", "Not found", "regional", "country", "auditor"):
        if code not in i18n.ES:
            missing.add(code)
    assert not missing, sorted(missing)


def test_language_negotiation_and_labels() -> None:
    assert i18n.negotiate("es-GT,es;q=0.9,en;q=0.5") == "es"
    assert i18n.negotiate("fr, en;q=0.3") == "en"
    assert i18n.negotiate(None) == "en"
    assert i18n.country_name("GT", "es") == "Guatemala"
    assert i18n.vocab_label("service", "legal_aid", "es").startswith("Asistencia")


def test_charts_escape_labels() -> None:
    evil = "<script>alert(1)</script>"
    for svg in (bar_chart([("x", evil, 3)], title=evil),
                funnel_chart([("x", evil, 3), ("y", "b", 1)], title=evil),
                line_chart(["2026-11-02"], [("#000", evil, [1.0])], title=evil)):
        assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_boundaries_are_small_and_cover_the_route() -> None:
    path = CONSOLE / "static" / "data" / "americas-110m.geojson"
    assert path.stat().st_size < 1024 * 1024
    fc = json.loads(path.read_text())
    codes = {f["properties"]["iso_a2"] for f in fc["features"]}
    route = {"US", "MX", "GT", "BZ", "SV", "HN", "NI", "CR", "PA", "CO", "VE", "EC", "PE",
             "BO", "BR", "CL", "AR"}
    assert route <= codes
    for f in fc["features"]:
        lon, lat = f["properties"]["label"]
        assert -180 <= lon <= 180 and -90 <= lat <= 90
    assert (CONSOLE / "static" / "vendor" / "leaflet" / "leaflet.js").is_file()
    assert (CONSOLE / "static" / "vendor" / "leaflet" / "LICENSE").is_file()


def test_passwords_are_argon2id() -> None:
    h = hash_password("a long enough password")
    assert h.startswith("$argon2id$")
    assert verify_password(h, "a long enough password")
    assert not verify_password(h, "another password!!")
    assert not verify_password(None, "a long enough password")
    with pytest.raises(ValueError):
        hash_password("short")
