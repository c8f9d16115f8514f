"""The node's only door to the hub: HTTP per HUB_NODE_CONTRACT.md.

Why single-shot methods plus typed failures: the workers decide how to retry
(tenacity, exponential backoff with jitter, only on `HubUnavailable`), while a
refusal of an envelope (`HubRejected`, with the protocol's stable code) is final
and must never be retried with the same bytes. Authentication is OAuth 2.0
client credentials with private_key_jwt (RFC 7523): a short-lived assertion
signed with the node's Ed25519 key buys a 5-minute access token, cached until
shortly before it expires and refreshed once on a 401 ``unauthorized``.

Several hub URLs (``--hub`` repeated at init, stored comma-separated): the client uses one at
a time and moves to the next when a hub process cannot be reached or answers 502/503/504. A
request that never reached a hub (connection refused or timed out while connecting) is
retried on the next URL at once; any other failure is left to the caller's retry, which then
goes to the next URL (safe: retries resend the same bytes and the hub is idempotent).
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from common.logging import get_logger
from node.settings import SOFTWARE_VERSION
from protocol import SigningKeyPair, b64u

__all__ = [
    "HubClient",
    "HubError",
    "HubRejected",
    "HubUnavailable",
    "is_transient",
    "retrying",
    "split_hub_urls",
]

_log = get_logger(__name__)

USER_AGENT = f"rssn-node/{SOFTWARE_VERSION}"
#: The contract's token endpoint path, used against whichever hub URL is current.
TOKEN_PATH = "/v1/oauth/token"  # noqa: S105 - a path
_FAILOVER_STATUS = frozenset({502, 503, 504})


def split_hub_urls(value: str | Sequence[str]) -> list[str]:
    """Hub base URLs from ``"https://a, https://b"`` or a list of such strings (order kept,
    trailing slashes and duplicates dropped)."""
    items = [value] if isinstance(value, str) else list(value)
    urls: list[str] = []
    for item in items:
        for part in item.split(","):
            url = part.strip().rstrip("/")
            if url and url not in urls:
                urls.append(url)
    return urls
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class HubError(Exception):
    """Base: `code` is a stable code (the hub's problem code or a transport class name)."""

    def __init__(self, code: str, status: int | None = None, problem: dict[str, Any] | None = None):
        super().__init__(code)
        self.code = code
        self.status = status
        self.problem = problem or {}


class HubUnavailable(HubError):
    """Transient: network down, hub overloaded or restarting. Retry with backoff."""


class HubRejected(HubError):
    """Final: the hub refused this request for a stated reason (protocol code)."""


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, HubUnavailable)


def retrying(
    stop_event: threading.Event | None = None,
    *,
    max_wait: float = 30.0,
    max_attempts: int | None = None,
) -> Any:
    """A tenacity Retrying for hub calls: only transient failures, exponential backoff with
    full jitter, interruptible by `stop_event` (so shutdown is prompt)."""
    import tenacity

    stops: list[Any] = []
    if stop_event is not None:
        stops.append(tenacity.stop_when_event_set(stop_event))
    if max_attempts is not None:
        stops.append(tenacity.stop_after_attempt(max_attempts))
    stop: Any = tenacity.stop_any(*stops) if stops else tenacity.stop_never

    def sleep(seconds: float) -> None:
        if stop_event is None:
            time.sleep(seconds)
        else:
            stop_event.wait(seconds)

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        wait=tenacity.wait_random_exponential(multiplier=0.25, max=max_wait),
        stop=stop,
        sleep=sleep,
        reraise=True,
    )


@dataclass
class _Token:
    value: str
    expires: float


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _json(response: httpx.Response) -> dict[str, Any]:
    """A JSON object body, parsed with orjson (a mailbox page is up to 500 envelopes, ~1 MB:
    the standard library's parser costs several times as much)."""
    import orjson

    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise HubUnavailable("bad_response", response.status_code) from None
    return body if isinstance(body, dict) else {}


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    problem = _problem(response)
    code = str(problem.get("code") or f"http_{response.status_code}")
    if response.status_code in _TRANSIENT_STATUS:
        raise HubUnavailable(code, response.status_code, problem)
    raise HubRejected(code, response.status_code, problem)


class HubClient:
    """Thread-safe (httpx.Client is); one per process."""

    def __init__(
        self,
        hub_url: str,
        *,
        node_id: str | None = None,
        signing: SigningKeyPair | None = None,
        token_endpoint: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hub_urls = split_hub_urls(hub_url) or [hub_url.rstrip("/")]
        self.hub_url = self.hub_urls[0]
        self._url_lock = threading.Lock()
        self.node_id = node_id
        self.signing = signing
        self.token_endpoint = token_endpoint
        self._clock = clock
        self._token: _Token | None = None
        self._token_lock = threading.Lock()
        self._http = httpx.Client(
            base_url=self.hub_url,
            timeout=httpx.Timeout(timeout, connect=10.0),
            headers={"User-Agent": USER_AGENT},
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    # -- plumbing ------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(len(self.hub_urls)):
            base = str(self._http.base_url)
            try:
                r = self._http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # Nothing reached that hub process: the next URL can have the request now.
                if self._failover(base) and attempt + 1 < len(self.hub_urls):
                    continue
                raise HubUnavailable(type(exc).__name__) from exc
            except httpx.TransportError as exc:
                self._failover(base)
                raise HubUnavailable(type(exc).__name__) from exc
            if r.status_code in _FAILOVER_STATUS:
                self._failover(base)
            return r
        raise AssertionError("unreachable")

    def _failover(self, failed_base: str) -> bool:
        """Move to the next hub URL unless another thread already moved; False with one URL."""
        if len(self.hub_urls) < 2:
            return False
        with self._url_lock:
            if str(self._http.base_url) == failed_base:
                now = failed_base.rstrip("/")
                i = self.hub_urls.index(now) if now in self.hub_urls else -1
                self.hub_url = self.hub_urls[(i + 1) % len(self.hub_urls)]
                self._http.base_url = httpx.URL(self.hub_url)
                _log.warning("hub_failover", hub=self.hub_url,
                             hub_index=self.hub_urls.index(self.hub_url))
        return True

    def _assertion(self) -> str:
        from joserfc import jwt
        from joserfc.jwk import OKPKey

        assert self.signing is not None and self.node_id and self.token_endpoint
        key = OKPKey.import_key(
            {"kty": "OKP", "crv": "Ed25519", "d": b64u(self.signing.seed),
             "x": b64u(self.signing.public)}
        )
        now = int(self._clock())
        from common.ids import new_message_id

        claims = {
            "iss": self.node_id,
            "sub": self.node_id,
            "aud": self.token_endpoint,
            "jti": new_message_id(),
            "iat": now,
            "exp": now + 120,
        }
        with warnings.catch_warnings():
            # RFC 9864 prefers "Ed25519" as the alg name; the contract fixes "EdDSA".
            warnings.simplefilter("ignore")
            return jwt.encode({"alg": "EdDSA", "kid": self.signing.kid}, claims, key,
                              algorithms=["EdDSA"])

    def _access_token(self, *, force: bool = False) -> str:
        with self._token_lock:
            tok = self._token
            if not force and tok is not None and tok.expires - 30 > self._clock():
                return tok.value
            assert self.token_endpoint
            # With several hub URLs the token request goes to the current one (the assertion's
            # audience stays the endpoint given at enrollment: the hub's public URL).
            r = self._send(
                "POST",
                self.token_endpoint if len(self.hub_urls) == 1 else TOKEN_PATH,
                data={
                    "grant_type": "client_credentials",
                    "client_assertion_type":
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    "client_assertion": self._assertion(),
                    "client_id": self.node_id or "",
                },
            )
            if r.status_code in (400, 401, 403):
                # Revoked, unknown or clock trouble: the operator must act, but the node keeps
                # its queue and retries slowly rather than dropping anything.
                raise HubUnavailable(str(_problem(r).get("code") or "unauthorized"), r.status_code)
            _raise_for(r)
            body = r.json()
            self._token = _Token(
                str(body["access_token"]), self._clock() + float(body.get("expires_in", 300))
            )
            return self._token.value

    def _authed(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in (0, 1):
            headers = {**kwargs.pop("headers", {}),
                       "Authorization": f"Bearer {self._access_token(force=attempt == 1)}"}
            r = self._send(method, path, headers=headers, **kwargs)
            if r.status_code == 401 and _problem(r).get("code") in (None, "unauthorized"):
                if attempt == 0:
                    kwargs["headers"] = {k: v for k, v in headers.items() if k != "Authorization"}
                    continue
                raise HubUnavailable("unauthorized", 401, _problem(r))
            return r
        raise AssertionError("unreachable")

    # -- the contract --------------------------------------------------------------

    def enroll(self, body: dict[str, Any]) -> dict[str, Any]:
        r = self._send("POST", "/v1/enroll", json=body)
        _raise_for(r)
        result: dict[str, Any] = r.json()
        return result

    def healthz(self) -> bool:
        """True when any of the hub URLs answers /healthz."""
        for url in self.hub_urls:
            try:
                r = self._http.get(url + "/healthz", timeout=5.0)
            except httpx.TransportError:
                continue
            if r.status_code == 200:
                return True
        return False

    def directory(self) -> bytes:
        r = self._authed("GET", "/v1/directory")
        _raise_for(r)
        return r.content

    def post_message(self, envelope: bytes) -> dict[str, Any]:
        """202 accepted or 200 duplicate both mean: the hub holds exactly these bytes."""
        r = self._authed("POST", "/v1/messages", content=envelope,
                         headers={"Content-Type": "application/json"})
        _raise_for(r)
        result: dict[str, Any] = r.json()
        return result

    def post_batch(self, envelopes: Sequence[bytes]) -> list[dict[str, Any]]:
        # The envelopes are canonical JSON objects; splice them without re-serialising.
        body = b'{"envelopes":[' + b",".join(envelopes) + b"]}"
        r = self._authed("POST", "/v1/messages/batch", content=body,
                         headers={"Content-Type": "application/json"})
        _raise_for(r)
        results = _json(r).get("results")
        if not isinstance(results, list) or len(results) != len(envelopes):
            raise HubUnavailable("bad_batch_response", r.status_code)
        return results

    def mailbox(self, *, wait: int, limit: int) -> list[dict[str, Any]]:
        r = self._authed("GET", "/v1/mailbox", params={"wait": wait, "limit": limit},
                         timeout=httpx.Timeout(wait + 30.0, connect=10.0))
        _raise_for(r)
        items = _json(r).get("items", [])
        return items if isinstance(items, list) else []

    def ack(self, ids: Iterable[str]) -> int:
        id_list = list(ids)
        if not id_list:
            return 0
        r = self._authed("POST", "/v1/mailbox/ack", json={"ids": id_list})
        _raise_for(r)
        return int(r.json().get("acked", 0))

    # -- published services (HSDS 3.0; hub/console/api.py) ----------------------------

    def put_services(self, document: bytes) -> dict[str, Any]:
        """Replace what this member publishes; the hub answers with counts and the new
        directory version (the services travel in the signed directory)."""
        r = self._authed("PUT", "/v1/services", content=document,
                         headers={"Content-Type": "application/json"})
        _raise_for(r)
        result: dict[str, Any] = r.json()
        return result

    def get_services(self) -> dict[str, Any]:
        r = self._authed("GET", "/v1/services")
        _raise_for(r)
        result: dict[str, Any] = r.json()
        return result
