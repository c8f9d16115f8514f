"""The node's failover between several hub URLs (`rssn-node init --hub URL1 --hub URL2`),
decided request by request: what moves to the next URL at once, what moves on the caller's
retry, and which token endpoint is used. The end-to-end proof with real processes is
test_scale_out.py; this pins the rules with a scripted transport.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from node.hub_client import HubClient, HubUnavailable, split_hub_urls
from protocol import SigningKeyPair

TOKEN_ENDPOINT = "https://hub.example.org/v1/oauth/token"


def _client(handler: Callable[[httpx.Request], httpx.Response],
            urls: str = "http://hub1:8000, http://hub2:8000/") -> HubClient:
    return HubClient(urls, node_id="ngo-a", signing=SigningKeyPair.generate(),
                     token_endpoint=TOKEN_ENDPOINT, transport=httpx.MockTransport(handler))


def test_split_hub_urls() -> None:
    assert split_hub_urls("http://a/, http://b,http://a") == ["http://a", "http://b"]
    assert split_hub_urls(["http://a", "http://b,http://c"]) == ["http://a", "http://b",
                                                               "http://c"]
    assert split_hub_urls("") == []


def test_connection_refused_moves_to_the_next_url_at_once() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.host} {request.url.path}")
        if request.url.host == "hub1":
            raise httpx.ConnectError("refused", request=request)
        if request.url.path == "/v1/oauth/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 300})
        return httpx.Response(200, json={"items": []})

    client = _client(handler)
    assert client.mailbox(wait=0, limit=10) == []
    # The token request went to the live process, by path, not to the enrollment URL.
    assert seen == ["hub1 /v1/oauth/token", "hub2 /v1/oauth/token", "hub2 /v1/mailbox"]
    assert client.hub_url == "http://hub2:8000"
    client.close()


def test_cut_mid_request_and_503_move_on_the_retry() -> None:
    calls: list[str] = []
    state = {"hub2": "cut"}

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.url.host} {request.url.path}")
        if request.url.path == "/v1/oauth/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 300})
        if request.url.host == "hub1":
            return httpx.Response(503, json={"code": "unavailable"})
        if state["hub2"] == "cut":
            state["hub2"] = "ok"
            raise httpx.ReadError("connection reset", request=request)
        return httpx.Response(200, json={"acked": 1})

    client = _client(handler, "http://hub1:8000,http://hub2:8000")
    with pytest.raises(HubUnavailable):  # 503: the caller retries, on the next URL
        client.ack(["x"])
    assert client.hub_url == "http://hub2:8000"
    with pytest.raises(HubUnavailable):  # reset after sending: not repeated by the client
        client.ack(["x"])
    assert client.hub_url == "http://hub1:8000"
    client.hub_url = "http://hub2:8000"
    client._http.base_url = httpx.URL(client.hub_url)
    assert client.ack(["x"]) == 1
    assert calls.count("hub2 /v1/mailbox/ack") == 2


def test_one_url_keeps_the_enrollment_token_endpoint() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path == "/v1/oauth/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 300})
        raise httpx.ConnectError("refused", request=request)

    client = _client(handler, "http://hub1:8000")
    with pytest.raises(HubUnavailable):
        client.mailbox(wait=0, limit=1)
    assert seen == [TOKEN_ENDPOINT, "http://hub1:8000/v1/mailbox?wait=0&limit=1"]
    assert client.hub_url == "http://hub1:8000"
