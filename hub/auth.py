"""Node authentication: OAuth 2.0 client credentials with private_key_jwt (RFC 7523, EdDSA).

Why this shape: a node already owns an Ed25519 identity pinned in the directory,
so it authenticates with a JWT signed by that key (no shared secret to leak),
and trades it for a short-lived, hub-signed access token. Client-assertion
checks (signature, iss = sub = client, aud, exp, jti) are authlib's
`JWTBearerClientAssertion`; we only plug in where keys and jti live, and
restrict algorithms to EdDSA (joserfc does not enable it by default).

Deny by default: every authenticated call re-reads the node's status (one
indexed query), so revocation takes effect at once; an access token is also
bound to the node's signing kid, so re-enrollment with new keys retires old
tokens.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import OKPKey

from common.ids import new_message_id
from common.problems import ProblemHTTPException
from protocol import SigningKeyPair, b64u

__all__ = [
    "ACCESS_TOKEN_AUDIENCE",
    "ASSERTION_TYPE",
    "AccessClaims",
    "AccessTokens",
    "NodeAssertionVerifier",
    "NodeClient",
    "unauthorized",
]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ACCESS_TOKEN_AUDIENCE = "rssn-hub"  # noqa: S105 - an audience, not a secret
SCOPE = "messages"
#: A client assertion may live at most this long (contract: exp <= iat + 300).
MAX_ASSERTION_LIFETIME = 300
ALGORITHMS = ["EdDSA"]

# The contract fixes "EdDSA" (RFC 8037); joserfc warns that RFC 9864 prefers "Ed25519".
warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)


def unauthorized(detail: str = "Authentication required", *, error: str | None = None) -> Exception:
    """401 problem+json (code `unauthorized`), with a Bearer challenge."""
    headers = {"WWW-Authenticate": 'Bearer realm="rssn-hub"'}
    if error:
        headers["WWW-Authenticate"] += f', error="{error}"'
    return ProblemHTTPException(401, "unauthorized", detail, headers=headers)


def public_okp(public_key: bytes) -> OKPKey:
    return OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "x": b64u(public_key)})


def private_okp(key: SigningKeyPair) -> OKPKey:
    return OKPKey.import_key(
        {"kty": "OKP", "crv": "Ed25519", "x": b64u(key.public), "d": b64u(key.seed)}
    )


@dataclass(frozen=True)
class NodeClient:
    """What authlib calls a client: an active, enrolled node."""

    client_id: str
    signing_key: bytes
    signing_kid: str

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == NodeAssertionVerifier.CLIENT_AUTH_METHOD and endpoint == "token"


class _FormRequest:
    """The two attributes authlib's assertion verifier reads and writes."""

    def __init__(self, form: dict[str, str]) -> None:
        self.form = form
        self.client: NodeClient | None = None


class NodeAssertionVerifier(JWTBearerClientAssertion):  # type: ignore[misc]
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(
        self,
        audiences: list[str],
        remember_jti: Callable[[str, str, int], bool],
        *,
        leeway: int = 30,
    ) -> None:
        super().__init__(validate_jti=True, leeway=leeway)
        self._audiences = audiences
        self._remember_jti = remember_jti

    def get_audiences(self) -> list[str]:
        return self._audiences

    def resolve_client_public_key(self, client: NodeClient) -> OKPKey:
        return public_okp(client.signing_key)

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=ALGORITHMS)
        except JoseError as exc:
            raise InvalidClientError(description="assertion signature or format invalid") from exc
        claims = token.claims
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int | float) or not isinstance(exp, int | float):
            raise InvalidClientError(description="assertion needs numeric iat and exp")
        if exp - iat > MAX_ASSERTION_LIFETIME:
            raise InvalidClientError(description="assertion lifetime exceeds 300 seconds")
        if iat > time.time() + self.leeway:
            raise InvalidClientError(description="assertion issued in the future")
        self.verify_claims(claims)
        return claims

    def validate_jti(self, claims: dict[str, Any], jti: object) -> bool:
        if not isinstance(jti, str) or not (0 < len(jti) <= 256):
            return False
        exp = int(claims["exp"]) + self.leeway
        return self._remember_jti(str(claims["sub"]), jti, exp * 1000)

    def authenticate(
        self, form: dict[str, str], query_client: Callable[[str], NodeClient | None]
    ) -> tuple[NodeClient, dict[str, Any]]:
        """Run authlib's checks; raise InvalidClientError on any failure."""
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get(
            "client_assertion"
        ):
            raise InvalidClientError(description="private_key_jwt client assertion required")
        headers, unverified = self.extract_assertion(form["client_assertion"])
        if form.get("client_id") and form["client_id"] != unverified.get("sub"):
            raise InvalidClientError(description="client_id does not match the assertion")
        request = _FormRequest(form)
        client = self(query_client, request)
        if client is None:
            raise InvalidClientError(description="client authentication failed")
        if headers.get("kid") not in (None, client.signing_kid):
            raise InvalidClientError(description="assertion kid is not the node's signing key")
        return client, unverified


@dataclass(frozen=True)
class AccessClaims:
    node_id: str
    node_kid: str
    expires_at: float
    jti: str


class AccessTokens:
    """Issue and check hub-signed access tokens (EdDSA JWT, aud `rssn-hub`, scope `messages`).

    Verified tokens are cached in memory (bounded), so a node's steady stream of calls costs
    one signature check per token, not per request. The node's status is *not* cached.
    """

    def __init__(self, hub_key: SigningKeyPair, *, issuer: str, ttl: int = 300) -> None:
        self._kid = hub_key.kid
        self._private = private_okp(hub_key)
        self._public = public_okp(hub_key.public)
        self._issuer = issuer
        self.ttl = ttl
        self._cache: dict[str, AccessClaims] = {}
        self._lock = threading.Lock()

    def issue(self, node_id: str, node_kid: str) -> tuple[str, int]:
        now = int(time.time())
        claims = {
            "iss": self._issuer,
            "sub": node_id,
            "aud": ACCESS_TOKEN_AUDIENCE,
            "iat": now,
            "exp": now + self.ttl,
            "jti": new_message_id(),
            "scope": SCOPE,
            "node_kid": node_kid,
        }
        header = {"alg": "EdDSA", "kid": self._kid, "typ": "at+jwt"}
        return jwt.encode(header, claims, self._private, algorithms=ALGORITHMS), self.ttl

    def check(self, token: str) -> AccessClaims:
        """Signature, audience, scope and expiry; raises a 401 problem."""
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at > now:
                return cached
            with self._lock:
                self._cache.pop(token, None)
            raise unauthorized("access token expired", error="invalid_token")
        if len(token) > 4096:
            raise unauthorized("access token invalid", error="invalid_token")
        try:
            decoded = jwt.decode(token, self._public, algorithms=ALGORITHMS)
        except (JoseError, ValueError) as exc:
            raise unauthorized("access token invalid", error="invalid_token") from exc
        c = decoded.claims
        if decoded.header.get("typ") != "at+jwt":
            raise unauthorized("access token invalid", error="invalid_token")
        exp, sub, kid = c.get("exp"), c.get("sub"), c.get("node_kid")
        if (
            c.get("aud") != ACCESS_TOKEN_AUDIENCE
            or c.get("scope") != SCOPE
            or not isinstance(exp, int | float)
            or not isinstance(sub, str)
            or not isinstance(kid, str)
        ):
            raise unauthorized("access token invalid", error="invalid_token")
        if exp <= now:
            raise unauthorized("access token expired", error="invalid_token")
        claims = AccessClaims(sub, kid, float(exp), str(c.get("jti", "")))
        with self._lock:
            if len(self._cache) >= 10_000:
                self._cache = {k: v for k, v in self._cache.items() if v.expires_at > now}
                if len(self._cache) >= 10_000:
                    self._cache.clear()
            self._cache[token] = claims
        return claims


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise unauthorized("Bearer access token required")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Bearer access token required")
    return token.strip()
