"""Argon2id password hashes (libsodium through PyNaCl): never our own cryptography.

Why the INTERACTIVE limits (64 MiB, 2 passes): sign-ins happen on the hub that also
routes referrals; the parameters are above OWASP's Argon2id minimum and keep a sign-in
well under a second on a 2-core machine. Hashes carry their parameters, so raising
them later only affects new hashes (and `needs_rehash` tells when to upgrade).
"""

from __future__ import annotations

import nacl.exceptions
import nacl.pwhash

__all__ = ["MIN_PASSWORD_LENGTH", "hash_password", "verify_password"]

MIN_PASSWORD_LENGTH = 12
_OPS = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
_MEM = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
#: Verified against when the account does not exist, so timing does not reveal which emails exist.
_DUMMY: bytes | None = None


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    return nacl.pwhash.argon2id.str(password.encode("utf-8"), opslimit=_OPS, memlimit=_MEM).decode(
        "ascii"
    )


def verify_password(stored: str | None, password: str) -> bool:
    """True when `password` matches; with no stored hash, spends the same time and says no."""
    global _DUMMY
    if stored is None:
        if _DUMMY is None:
            _DUMMY = nacl.pwhash.argon2id.str(b"dummy-password!", opslimit=_OPS, memlimit=_MEM)
        target = _DUMMY
    else:
        target = stored.encode("ascii")
    try:
        ok = nacl.pwhash.verify(target, password.encode("utf-8"))
    except (nacl.exceptions.InvalidkeyError, ValueError):
        ok = False
    return ok and stored is not None
