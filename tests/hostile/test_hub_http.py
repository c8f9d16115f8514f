"""Hostile envelopes, replays and impersonation over real HTTP against a running hub.

Proves: every mutated variant of a genuine envelope (hypothesis-driven, every field, member
and byte region), alone or inside batches, is refused by the hub with a 4xx problem+json
carrying a stable code, never 5xx, never accepted; none of them reaches the recipient's
mailbox, and none of them blocks the genuine envelope, which is accepted afterwards.
Replays are answered as duplicates without a second delivery; a member cannot submit,
read or acknowledge for another; a member's key cannot speak for another member.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import canonical_bytes
from tests.hostile.conftest import HubWorld
from tests.hostile.mutations import Mutation, apply, header_resigned, mutations
from tests.reliability_summary import Recorder, full_run

SINGLE = 5_000 if full_run() else 1_800
BATCHES = 120 if full_run() else 40


def refused(r: httpx.Response) -> bool:
    """A refusal as the contract defines it: 4xx problem+json with a code."""
    if not 400 <= r.status_code < 500:
        return False
    if not r.headers.get("content-type", "").startswith("application/problem+json"):
        return False
    body = r.json()
    return isinstance(body.get("code"), str) and bool(body["code"])


def _post(c: Any, data: bytes) -> httpx.Response:
    for _ in range(2):
        resp = c.http.post("/v1/messages", content=data,
                           headers={**c.auth(), "Content-Type": "application/json"})
        if resp.status_code != 401:
            break
        c.login()  # access tokens live five minutes; a long run outlives one
    return resp


def test_mutated_envelopes_are_refused_over_http(hub_world: HubWorld, tally: Recorder) -> None:
    s, r = hub_world.sender, hub_world.recipient
    s.login()
    genuine = s.seal_to(r.node_id).raw
    seen: set[bytes] = set()

    @settings(max_examples=SINGLE, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(m=mutations(len(genuine)))
    def one(m: Mutation) -> None:
        data = apply(genuine, m)
        if data == genuine or data in seen:
            return
        seen.add(data)
        resp = _post(s, data)
        ok = refused(resp)
        tally.hostile("envelope", data, accepted_wrongly=not ok,
                      detail=f"{m.describe()} -> {resp.status_code} {resp.text[:120]}")
        assert ok, (m.describe(), resp.status_code, resp.text[:300])

    @settings(max_examples=BATCHES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(ms=st.lists(mutations(len(genuine)), min_size=1, max_size=25))
    def batch(ms: list[Mutation]) -> None:
        items: list[Any] = []
        datas: list[bytes] = []
        for m in ms:
            data = apply(genuine, m)
            if data == genuine:
                continue
            try:
                value = json.loads(data)
            except ValueError:
                continue  # a batch member must be JSON: byte garbage is tested alone
            try:
                if canonical_bytes(value) == genuine:
                    continue  # the same JSON value written differently: it *is* the genuine
            except Exception:
                pass
            items.append(value)
            datas.append(data)
        if not items:
            return
        resp = s.http.post("/v1/messages/batch", json={"envelopes": items}, headers=s.auth())
        results = resp.json().get("results", []) if resp.status_code == 200 else None
        for i, data in enumerate(datas):
            if results is None:
                ok = refused(resp)
            else:
                ok = (len(results) == len(items) and results[i]["status"] == "rejected"
                      and isinstance(results[i].get("problem", {}).get("code"), str))
            tally.hostile("envelope", data, accepted_wrongly=not ok,
                          detail=f"batch item -> {resp.status_code} {resp.text[:120]}")
            assert ok, (resp.status_code, resp.text[:300])

    one()
    batch()
    # Nothing reached the recipient, and the genuine envelope was not blocked by its variants.
    assert r.items(wait=0) == []
    resp = _post(s, genuine)
    assert resp.status_code == 202, resp.text
    got = r.items(wait=5)
    assert [canonical_bytes(i["envelope"]) for i in got] == [genuine]
    assert r.ack([i["id"] for i in got]).json()["acked"] == 1


def test_replays_and_impersonation(hub_world: HubWorld, tally: Recorder) -> None:
    s, r, t = hub_world.sender, hub_world.recipient, hub_world.third
    for c in (s, r, t):
        c.login()
    env = s.seal_to(r.node_id)
    first = _post(s, env.raw)
    assert first.status_code == 202

    def expect(data: bytes, resp: httpx.Response, ok: bool, what: str) -> None:
        tally.hostile("replay", what.encode() + b"\x00" + data, accepted_wrongly=not ok,
                      detail=f"{what} -> {resp.status_code}")
        assert ok, (what, resp.status_code, resp.text[:300])

    # The same bytes again: the original receipt, no second mailbox item.
    again = _post(s, env.raw)
    expect(env.raw, again, again.status_code == 200 and again.json()["receipt"] ==
           first.json()["receipt"], "identical resubmission")
    # Another member replays the sender's envelope as if it were its own.
    by_third = _post(t, env.raw)
    expect(env.raw, by_third, refused(by_third) and by_third.status_code == 403,
           "replay by another member")
    # A member signs a header claiming to be the sender (with its own key).
    forged = header_resigned(env.raw, {"id": str(uuid.uuid4())}, t.signing)
    for who, c in (("third", t), ("sender", s)):
        resp = _post(c, forged)
        expect(forged, resp, refused(resp), f"foreign signature submitted by {who}")
    forged_as_third = header_resigned(env.raw, {"id": str(uuid.uuid4()), "from": t.node_id,
                                                "sender_kid": t.signing.kid}, t.signing)
    resp = _post(s, forged_as_third)
    expect(forged_as_third, resp, refused(resp) and resp.status_code == 403,
           "sender submits an envelope from third")
    # A different envelope under an id already used.
    reuse = s.seal_to(r.node_id, message_id=env.header.id)
    resp = _post(s, reuse.raw)
    expect(reuse.raw, resp, refused(resp) and resp.json()["code"] == "conflict",
           "id reused for other bytes")
    # Mailbox: only one's own items can be read or acknowledged.
    items = r.items(wait=5)
    assert [i["id"] for i in items] == [env.header.id]
    for c in (s, t):
        assert c.items(wait=0) == []
        resp = c.ack([env.header.id])
        expect(env.header.id.encode(), resp, resp.status_code == 200 and
               resp.json()["acked"] == 0, f"ack of another's item by {c.node_id}")
    assert r.ack([env.header.id]).json()["acked"] == 1
    # Replayed after delivery: a duplicate, never delivered again.
    late = _post(s, env.raw)
    expect(env.raw, late, late.status_code == 200, "replay after delivery")
    assert r.items(wait=2) == []
    # A revoked member's still-unexpired token is refused at once.
    rv = hub_world.revoked
    resp = rv.http.post("/v1/messages", content=env.raw,
                        headers={"Authorization": f"Bearer {hub_world.revoked_token}",
                                 "Content-Type": "application/json"})
    expect(env.raw, resp, refused(resp) and resp.status_code == 401, "revoked member")
