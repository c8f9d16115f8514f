"""The hub operator substitutes a member's keys (threat T2 in docs/THREAT_MODEL.md).

Whoever runs the hub can invite an existing member's node id again and enroll keys of its
own under that id (the legitimate key-rotation path). The signed directory then carries
the attacker's signing and encryption keys for that member, and senders encrypt to them.

What holds today (test_substitution_cuts_off_the_real_member): the real member is locked
out at once (its key is no longer current), so the substitution is visible to its operator,
and every node shows each member's signing-key fingerprint (GET /api/v1/directory) for
out-of-band comparison.

And (test_sender_refuses_a_silently_substituted_key): key continuity (node/peers.py). A
sender pinned each peer's signing key at first sight; when the directory shows another one
it says so (API, `rssn-node status`) and refuses to seal new referrals to it (409
unknown_key) until an operator confirms the new fingerprint (`rssn-node peers trust`).
"""

from __future__ import annotations

import pytest

from node.keystore import load_keys
from node.samples import sample_referral
from tests.fault.harness import NODE_PASS, Network, NodeProc
from tests.helpers.processes import wait_until
from tests.hub.client import NodeClient

pytestmark = [pytest.mark.timeout(600), pytest.mark.filterwarnings("ignore:EdDSA is deprecated")]


def _substitute(network: Network, victim: NodeProc) -> NodeClient:
    """The hub operator re-invites the victim's id and enrolls its own keys under it."""
    hub = network.hub
    assert hub is not None
    impostor = NodeClient(hub.url, victim.node_id)
    r = impostor.enroll(hub.invite(victim.node_id, "Asistencia Legal", "GT"))
    assert r.status_code == 201, r.text
    impostor.login()
    return impostor


def _fingerprints(node: NodeProc) -> dict[str, str]:
    return {i["node_id"]: i["signing_key_fingerprint"]
            for i in node.get("/api/v1/directory")["items"]}


def test_substitution_cuts_off_the_real_member_and_shows_in_fingerprints(
        network: Network) -> None:
    network.start_hub()
    a = network.add_node("mx-shelter", "Casa Refugio", "MX")
    b = network.add_node("gt-legal", "Asistencia Legal", "GT")
    a.knows(b.node_id)
    before = _fingerprints(a)[b.node_id]
    impostor = _substitute(network, b)
    after = wait_until(lambda: _fingerprints(a)[b.node_id] != before and
                       _fingerprints(a)[b.node_id], timeout=120, message="directory changed")
    assert after != before  # visible to anyone comparing fingerprints out of band
    # The real member can no longer act on the network: its key gets no token any more.
    keys = load_keys(b.data_dir / "keys.sealed.json", NODE_PASS)
    real = NodeClient(network.hub.url if network.hub else "", b.node_id, signing=keys.signing)
    real.token_endpoint = impostor.token_endpoint
    assert real.token_request().status_code == 401
    real.close()
    impostor.close()


def test_sender_refuses_a_silently_substituted_key(network: Network) -> None:
    network.start_hub()
    a = network.add_node("mx-shelter", "Casa Refugio", "MX")
    b = network.add_node("gt-legal", "Asistencia Legal", "GT")
    a.knows(b.node_id)
    before = _fingerprints(a)[b.node_id]
    impostor = _substitute(network, b)
    # The sender notices: its verified directory now shows another key for a known peer.
    changed = wait_until(lambda: next(
        (i for i in a.get("/api/v1/directory")["items"]
         if i["node_id"] == b.node_id and i["key_status"] == "changed"), None),
        timeout=120, interval=1.0, message="key change noticed")
    assert changed["trusted_fingerprint"] == before
    assert changed["new_fingerprint"] == changed["signing_key_fingerprint"] != before
    assert "KEY CHANGED" in a.cli("status", "--data-dir", str(a.data_dir))
    # ... and refuses: the referral is not sealed to the new key (409 unknown_key), never
    # silently; it would be only after a person confirms the new fingerprint out of band.
    r = a.post("/api/v1/referrals", {"to": b.node_id, "referral": sample_referral(2)})
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "unknown_key"
    items = impostor.items(wait=5)
    opened = [impostor.open_item(i) for i in items if i["type"] == "envelope"]
    impostor.close()
    assert opened == [], "the impostor received and opened a referral meant for the member"
