"""Forged, expired, replayed and mangled credentials against a running hub.

Access tokens are forged *with the hub's real signing key* (unsealed from the hub's
database with the operator passphrase, as a thief of both would), so the claim checks are
exercised behind a valid signature, and without it (other keys, alg none, HMAC with the
public key as secret). Client assertions are built with the node's key and with others'.

Proves: only a hub-signed, unexpired ``at+jwt`` for an active node with its current key,
audience ``rssn-hub`` and scope ``messages`` opens the node routes; only a fresh,
single-use client assertion signed by the node's own key, for the hub's token endpoint,
with a lifetime of at most 300 seconds, buys an access token. Everything else is a 4xx.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import warnings
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import OKPKey

from common.db import make_engine
from hub.hubkey import load_hub_key
from protocol import SigningKeyPair, b64u
from tests.hostile.conftest import HubWorld
from tests.hub.conftest import PASSPHRASE
from tests.reliability_summary import Recorder, full_run

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
MANGLED = 1_200 if full_run() else 400


def _b64(d: dict[str, Any] | bytes) -> str:
    raw = d if isinstance(d, bytes) else json.dumps(d, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _okp(key: SigningKeyPair) -> OKPKey:
    return OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "x": b64u(key.public),
                              "d": b64u(key.seed)})


def _sign(header: dict[str, Any], claims: dict[str, Any], key: SigningKeyPair) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jwt.encode(header, claims, _okp(key), algorithms=["EdDSA"])


def _hub_key(world: HubWorld) -> SigningKeyPair:
    import sqlalchemy as sa

    engine = make_engine(f"sqlite:///{world.hub.data_dir / 'hub.db'}", poolclass=sa.pool.NullPool)
    try:
        return load_hub_key(engine, PASSPHRASE)
    finally:
        engine.dispose()


def _access_claims(node_id: str, node_kid: str, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": "rssn-hub", "sub": node_id, "aud": "rssn-hub", "iat": now,
              "exp": now + 300, "jti": secrets.token_hex(8), "scope": "messages",
              "node_kid": node_kid}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not ...}


def _mailbox(world: HubWorld, token: str) -> httpx.Response:
    return world.sender.http.get("/v1/mailbox", params={"wait": 0},
                                 headers={"Authorization": f"Bearer {token}"})


def test_forged_and_mangled_access_tokens(hub_world: HubWorld, tally: Recorder) -> None:
    w = hub_world
    hub = _hub_key(w)
    s = w.sender
    other = SigningKeyPair.generate()
    hdr = {"alg": "EdDSA", "kid": hub.kid, "typ": "at+jwt"}
    genuine = s.login()
    assert _mailbox(w, genuine).status_code == 200
    # Sanity of the forgery kit: the hub's key with correct claims *is* accepted.
    assert _mailbox(w, _sign(hdr, _access_claims(s.node_id, s.signing.kid), hub)
                    ).status_code == 200
    now = int(time.time())
    cases: dict[str, str] = {
        "expired": _sign(hdr, _access_claims(s.node_id, s.signing.kid, exp=now - 1), hub),
        "expired long ago": _sign(hdr, _access_claims(s.node_id, s.signing.kid, iat=now - 9999,
                                                      exp=now - 9000), hub),
        "wrong audience": _sign(hdr, _access_claims(s.node_id, s.signing.kid, aud="rssn-console"),
                                hub),
        "audience list": _sign(hdr, _access_claims(s.node_id, s.signing.kid,
                                                   aud=["rssn-hub", "x"]), hub),
        "no audience": _sign(hdr, _access_claims(s.node_id, s.signing.kid, aud=...), hub),
        "wrong scope": _sign(hdr, _access_claims(s.node_id, s.signing.kid, scope="admin"), hub),
        "no expiry": _sign(hdr, _access_claims(s.node_id, s.signing.kid, exp=...), hub),
        "expiry as text": _sign(hdr, _access_claims(s.node_id, s.signing.kid, exp="9999999999"),
                                hub),
        "unknown node": _sign(hdr, _access_claims("zz-unknown", s.signing.kid), hub),
        "revoked node": _sign(hdr, _access_claims(w.revoked.node_id, w.revoked.signing.kid), hub),
        "stale node key": _sign(hdr, _access_claims(s.node_id, other.kid), hub),
        "no node key": _sign(hdr, _access_claims(s.node_id, ...), hub),
        "subject not text": _sign(hdr, _access_claims(["mx-sender"], s.signing.kid), hub),
        "typ JWT": _sign({**hdr, "typ": "JWT"}, _access_claims(s.node_id, s.signing.kid), hub),
        "no typ": _sign({"alg": "EdDSA", "kid": hub.kid},
                        _access_claims(s.node_id, s.signing.kid), hub),
        "signed by another key": _sign(hdr, _access_claims(s.node_id, s.signing.kid), other),
        "signed by the node itself": _sign(hdr, _access_claims(s.node_id, s.signing.kid),
                                           s.signing),
        "alg none": _b64({"alg": "none", "typ": "at+jwt"}) + "." +
                    _b64(_access_claims(s.node_id, s.signing.kid)) + ".",
        "alg none no dot": _b64({"alg": "none"}) + "." +
                           _b64(_access_claims(s.node_id, s.signing.kid)),
        "HS256 with the hub public key": _hmac(hub.public, _access_claims(s.node_id,
                                                                           s.signing.kid)),
        "empty": "", "space": " ", "dots": "..", "garbage": "not-a-token",
        "huge": "A" * 100_000, "nul": "a\x00b",
        "genuine with extra segment": genuine + ".x",
        "genuine reversed": genuine[::-1],
        "genuine truncated": genuine[:-10],
        "genuine payload swapped": _swap_payload(genuine, _access_claims(w.third.node_id,
                                                                         w.third.signing.kid)),
        "revoked member's real token": w.revoked_token,
    }
    for what, token in cases.items():
        try:
            resp = _mailbox(w, token)
        except (httpx.LocalProtocolError, UnicodeEncodeError):
            tally.hostile("token", token)  # the client library itself refuses to send it
            continue
        # 401 problem from the hub, or 400/431 from the HTTP server for an oversized header.
        ok = (resp.status_code == 401 and resp.json().get("code") == "unauthorized") or \
            resp.status_code in (400, 431)
        tally.hostile("token", token, accepted_wrongly=not ok, detail=f"{what}: {resp.status_code}")
        assert ok, (what, resp.status_code, resp.text[:200])
    for scheme in ("Basic", "Token", "bearer", "BEARER", "Bearer\t", ""):
        resp = w.sender.http.get("/v1/mailbox", headers={"Authorization": f"{scheme} {genuine}"
                                                         if scheme else genuine})
        ok = resp.status_code == 401 or (resp.status_code == 200 and
                                         scheme.strip().lower() == "bearer")
        tally.hostile("authorization", f"{scheme}|{genuine}", accepted_wrongly=not ok,
                      detail=f"scheme {scheme!r}: {resp.status_code}")
        assert ok, (scheme, resp.status_code)

    @seed(7001)
    @settings(max_examples=MANGLED, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(pos=st.integers(0, len(genuine) - 1), char=st.sampled_from(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="))
    def mangled(pos: int, char: str) -> None:
        token = genuine[:pos] + char + genuine[pos + 1:]
        if token == genuine:
            return
        resp = _mailbox(w, token)
        # A change in the last character may only touch unused base64 bits of the signature.
        same_sig = _decoded(token) == _decoded(genuine)
        ok = resp.status_code == 401 or (resp.status_code == 200 and same_sig)
        tally.hostile("token", token, accepted_wrongly=not ok,
                      detail=f"mangled at {pos}: {resp.status_code}")
        assert ok, (pos, char, resp.status_code)

    mangled()


def _hmac(secret: bytes, claims: dict[str, Any]) -> str:
    head = _b64({"alg": "HS256", "typ": "at+jwt"}) + "." + _b64(claims)
    sig = hmac.new(secret, head.encode(), hashlib.sha256).digest()
    return head + "." + _b64(sig)


def _swap_payload(token: str, claims: dict[str, Any]) -> str:
    h, _p, sig = token.split(".")
    return f"{h}.{_b64(claims)}.{sig}"


def _decoded(token: str) -> tuple[bytes, ...] | None:
    try:
        return tuple(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)) for p in token.split("."))
    except Exception:
        return None


def _token(w: HubWorld, assertion: str, **form: str) -> httpx.Response:
    s = w.sender
    assert s.token_endpoint
    data = {"grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion, "client_id": s.node_id, **form}
    return s.http.post(s.token_endpoint, data={k: v for k, v in data.items() if v is not None})


def test_forged_replayed_and_mangled_client_assertions(hub_world: HubWorld,
                                                       tally: Recorder) -> None:
    w = hub_world
    s, t = w.sender, w.third
    now = int(time.time())
    replayed = s.assertion()
    assert _token(w, replayed).status_code == 200
    other = SigningKeyPair.generate()
    cases: dict[str, tuple[str, dict[str, str | None]]] = {
        "replayed jti": (replayed, {}),
        "wrong audience": (s.assertion(claims={"aud": "https://evil.example/token"}), {}),
        "audience of another route": (s.assertion(claims={"aud": w.hub.url + "/v1/messages"}),
                                      {}),
        "expired": (s.assertion(claims={"iat": now - 600, "exp": now - 300}), {}),
        "issued in the future": (s.assertion(claims={"iat": now + 3600, "exp": now + 3700}), {}),
        "lifetime above 300 s": (s.assertion(claims={"exp": now + 3600}), {}),
        "iss differs from sub": (s.assertion(claims={"iss": t.node_id}), {}),
        "sub is another member": (s.assertion(claims={"sub": t.node_id, "iss": t.node_id}),
                                  {"client_id": t.node_id}),
        "another member's key": (s.assertion(key=t.signing), {}),
        "a stranger's key": (s.assertion(key=other), {}),
        "no jti": (s.assertion(claims={"jti": None}), {}),
        "jti not text": (s.assertion(claims={"jti": 12345}), {}),
        "huge jti": (s.assertion(claims={"jti": "j" * 5000}), {}),
        "client_id mismatch": (s.assertion(), {"client_id": t.node_id}),
        "wrong grant": (s.assertion(), {"grant_type": "password"}),
        "no grant": (s.assertion(), {"grant_type": None}),
        "wrong assertion type": (s.assertion(), {"client_assertion_type": "urn:x"}),
        "alg none": (_b64({"alg": "none"}) + "." + _b64({"iss": s.node_id, "sub": s.node_id,
                                                          "aud": s.token_endpoint, "jti": "x1",
                                                          "iat": now, "exp": now + 60}) + ".",
                     {}),
        "HS256 with the node public key": (_hmac(s.signing.public, {
            "iss": s.node_id, "sub": s.node_id, "aud": s.token_endpoint, "jti": "x2",
            "iat": now, "exp": now + 60}), {}),
        "revoked member": (w.revoked.assertion(), {"client_id": w.revoked.node_id}),
        "unknown member": (s.assertion(claims={"iss": "zz-unknown", "sub": "zz-unknown"}),
                           {"client_id": "zz-unknown"}),
        "kid of another key": (_sign({"alg": "EdDSA", "kid": t.signing.kid}, {
            "iss": s.node_id, "sub": s.node_id, "aud": s.token_endpoint, "jti": "x3",
            "iat": now, "exp": now + 60}, s.signing), {}),
        "empty": ("", {}), "garbage": ("a.b.c", {}),
    }
    for what, (assertion, form) in cases.items():
        resp = _token(w, assertion, **{k: v for k, v in form.items()})  # type: ignore[arg-type]
        ok = 400 <= resp.status_code < 500 and "access_token" not in resp.text
        tally.hostile("assertion", f"{what}|{assertion}|{sorted(form.items())}",
                      accepted_wrongly=not ok, detail=f"{what}: {resp.status_code}")
        assert ok, (what, resp.status_code, resp.text[:200])

    @seed(7002)
    @settings(max_examples=MANGLED, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def mangled(data: st.DataObject) -> None:
        good = s.assertion()  # fresh jti each time: only the mangling can make it fail
        pos = data.draw(st.integers(0, len(good) - 1))
        char = data.draw(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                         "0123456789-_."))
        token = good[:pos] + char + good[pos + 1:]
        if token == good:
            return
        resp = _token(w, token)
        same = _decoded(token) == _decoded(good)
        ok = (400 <= resp.status_code < 500) or (resp.status_code == 200 and same)
        tally.hostile("assertion", token, accepted_wrongly=not ok,
                      detail=f"mangled at {pos}: {resp.status_code}")
        assert ok, (pos, resp.status_code, resp.text[:200])

    mangled()
