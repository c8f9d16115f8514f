"""The hub's Ed25519 identity: created once by `rssn-hub init`, sealed with the operator passphrase.

Why in the database: several hub processes on one PostgreSQL must sign with the
same key (nodes pin it at enrollment), and the database is what they share.
The seed is sealed (Argon2id + SecretBox, common.secretstore), so a database
dump alone does not let anyone impersonate the hub.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

import nacl.signing
import sqlalchemy as sa

from common.secretstore import open_secret, seal_secret
from protocol import SigningKeyPair, signing_kid

from .store import queries as q

__all__ = ["CachedSigningKey", "HubKeyMissing", "create_or_get_public", "load_hub_key"]


class CachedSigningKey(SigningKeyPair):
    """The hub signs a receipt per accepted envelope: derive the libsodium key (and the
    public key and kid) once, not on every signature. Same bytes out as SigningKeyPair."""

    @cached_property
    def _sk(self) -> nacl.signing.SigningKey:
        return nacl.signing.SigningKey(self.seed)

    @cached_property
    def public(self) -> bytes:
        return bytes(self._sk.verify_key)

    @cached_property
    def kid(self) -> str:
        return signing_kid(self.public)

    def sign(self, message: bytes) -> bytes:
        return self._sk.sign(message).signature


class HubKeyMissing(RuntimeError):
    """The database has no hub key: run `rssn-hub init` first."""


def create_or_get_public(engine: sa.Engine, passphrase_source: Callable[[], str]) -> tuple[bytes, bool]:
    """Return (public key, created). `passphrase_source()` is called only when a key is made."""
    with engine.begin() as conn:
        row = q.active_hub_key(conn)
        if row is not None:
            return bytes(row.public_key), False
    passphrase = passphrase_source()
    key = SigningKeyPair.generate()
    sealed = seal_secret(passphrase, key.seed)
    with engine.begin() as conn:
        # Another `init` may have raced us: the first key wins, ours is discarded.
        row = q.active_hub_key(conn)
        if row is not None:
            return bytes(row.public_key), False
        q.insert_hub_key(conn, key.kid, key.public, sealed, q.now_ms())
    return key.public, True


def load_hub_key(engine: sa.Engine, passphrase: str) -> CachedSigningKey:
    """Unseal the active hub key (WrongPassphrase / CorruptKeyFile on failure)."""
    with engine.begin() as conn:
        row = q.active_hub_key(conn)
    if row is None:
        raise HubKeyMissing("no hub key in the database; run `rssn-hub init` first")
    seed = open_secret(passphrase, bytes(row.sealed_seed))
    if len(seed) != 32:
        raise HubKeyMissing("sealed hub key has the wrong length")
    key = CachedSigningKey(seed)
    if key.public != bytes(row.public_key):
        raise HubKeyMissing("sealed hub key does not match its public key")
    return key
