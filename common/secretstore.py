"""Private keys at rest: passphrase-sealed JSON documents, written 0600 atomically.

Why: a node's signing and decryption keys are what stand between a stolen
laptop or backup and every referral the organisation ever received. They are
sealed with a key derived from an operator passphrase (Argon2id, libsodium via
PyNaCl -- no home-made cryptography) and authenticated encryption
(XSalsa20-Poly1305 ``SecretBox``), so a wrong passphrase and a tampered file
are both detected rather than producing garbage keys.

File format (version 1)::

    {"v": 1, "kdf": "argon2id", "salt": b64, "opslimit": int, "memlimit": int,
     "nonce": b64, "ciphertext": b64}

KDF cost profiles: ``interactive`` (fast, ~64 MiB), ``moderate`` (default,
~256 MiB, about a second), ``sensitive`` (~1 GiB). ``RSSN_KDF_PROFILE``
overrides the default profile; the test suite sets it to ``interactive`` so
that sealing keys does not dominate test time. The parameters used are stored
in each file, so files sealed under any profile open under any setting.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

__all__ = [
    "KDF_PROFILE_ENV",
    "CorruptKeyFile",
    "SecretStoreError",
    "WrongPassphrase",
    "kdf_profile",
    "open_secret",
    "read_sealed_file",
    "seal_secret",
    "write_private_file",
    "write_sealed_file",
]

KDF_PROFILE_ENV = "RSSN_KDF_PROFILE"
FORMAT_VERSION = 1

_argon = nacl.pwhash.argon2id

_PROFILES: dict[str, tuple[int, int]] = {
    "interactive": (_argon.OPSLIMIT_INTERACTIVE, _argon.MEMLIMIT_INTERACTIVE),
    "moderate": (_argon.OPSLIMIT_MODERATE, _argon.MEMLIMIT_MODERATE),
    "sensitive": (_argon.OPSLIMIT_SENSITIVE, _argon.MEMLIMIT_SENSITIVE),
}


class SecretStoreError(Exception):
    """Base class; messages never contain the passphrase or key material."""


class WrongPassphrase(SecretStoreError):
    """The passphrase does not open this key file (or the ciphertext was altered)."""

    def __init__(self, message: str = "wrong passphrase for this key file") -> None:
        super().__init__(message)


class CorruptKeyFile(SecretStoreError):
    """The key file is not a readable version-1 sealed document."""


def kdf_profile(ops: str | None = None) -> str:
    """The effective profile: ``ops`` if given, else ``$RSSN_KDF_PROFILE``, else ``moderate``."""
    name = (ops or os.environ.get(KDF_PROFILE_ENV) or "moderate").strip().lower()
    if name not in _PROFILES:
        raise ValueError(f"unknown KDF profile {name!r}; choose one of {sorted(_PROFILES)}")
    return name


def _b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64d(doc: dict[str, Any], key: str, size: int | None = None) -> bytes:
    value = doc.get(key)
    if not isinstance(value, str):
        raise CorruptKeyFile(f"key file field {key!r} is missing or not a string")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise CorruptKeyFile(f"key file field {key!r} is not valid base64") from exc
    if size is not None and len(raw) != size:
        raise CorruptKeyFile(f"key file field {key!r} has the wrong length")
    return raw


def _derive(passphrase: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    return _argon.kdf(
        nacl.secret.SecretBox.KEY_SIZE,
        passphrase.encode("utf-8"),
        salt,
        opslimit=opslimit,
        memlimit=memlimit,
    )


def seal_secret(passphrase: str, plaintext: bytes, *, ops: str | None = None) -> bytes:
    """Encrypt ``plaintext`` under ``passphrase``; returns the JSON document as bytes.

    ``ops`` picks the KDF profile (see module docstring); ``None`` means
    ``$RSSN_KDF_PROFILE`` or ``moderate``.
    """
    if not passphrase:
        raise ValueError("an empty passphrase does not protect anything")
    opslimit, memlimit = _PROFILES[kdf_profile(ops)]
    salt = nacl.utils.random(_argon.SALTBYTES)
    key = _derive(passphrase, salt, opslimit, memlimit)
    box = nacl.secret.SecretBox(key)
    nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
    encrypted = box.encrypt(plaintext, nonce)
    doc = {
        "v": FORMAT_VERSION,
        "kdf": "argon2id",
        "salt": _b64e(salt),
        "opslimit": opslimit,
        "memlimit": memlimit,
        "nonce": _b64e(nonce),
        "ciphertext": _b64e(encrypted.ciphertext),
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode("ascii") + b"\n"


def open_secret(passphrase: str, blob: bytes) -> bytes:
    """Decrypt a document from :func:`seal_secret`.

    Raises :class:`WrongPassphrase` or :class:`CorruptKeyFile`, never a raw
    library exception, so CLIs can print one clear line and exit.
    """
    try:
        doc = json.loads(blob)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptKeyFile("key file is not JSON") from exc
    if not isinstance(doc, dict):
        raise CorruptKeyFile("key file is not a JSON object")
    if doc.get("v") != FORMAT_VERSION:
        raise CorruptKeyFile("unsupported key file version")
    if doc.get("kdf") != "argon2id":
        raise CorruptKeyFile("unsupported key derivation function")
    opslimit, memlimit = doc.get("opslimit"), doc.get("memlimit")
    # Bounds: a tampered file must not make us burn unbounded CPU or memory.
    if (
        not isinstance(opslimit, int)
        or isinstance(opslimit, bool)
        or not _argon.OPSLIMIT_MIN <= opslimit <= _argon.OPSLIMIT_SENSITIVE
    ):
        raise CorruptKeyFile("key file opslimit is out of range")
    if (
        not isinstance(memlimit, int)
        or isinstance(memlimit, bool)
        or not _argon.MEMLIMIT_MIN <= memlimit <= _argon.MEMLIMIT_SENSITIVE
    ):
        raise CorruptKeyFile("key file memlimit is out of range")
    salt = _b64d(doc, "salt", _argon.SALTBYTES)
    nonce = _b64d(doc, "nonce", nacl.secret.SecretBox.NONCE_SIZE)
    ciphertext = _b64d(doc, "ciphertext")
    if len(ciphertext) < nacl.secret.SecretBox.MACBYTES:
        raise CorruptKeyFile("key file ciphertext is truncated")
    try:
        key = _derive(passphrase, salt, opslimit, memlimit)
    except nacl.exceptions.RuntimeError as exc:  # pragma: no cover - resource failure
        raise CorruptKeyFile("key derivation failed with the stored parameters") from exc
    try:
        return bytes(nacl.secret.SecretBox(key).decrypt(ciphertext, nonce))
    except nacl.exceptions.CryptoError:
        raise WrongPassphrase() from None


def write_private_file(path: str | Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, readable by the owner only (0600).

    Why atomic (temp file + fsync + rename + directory fsync): a crash while
    rewriting a key file must leave either the old or the new key, never a
    truncated file that locks the organisation out of its own messages.
    """
    target = Path(path)
    directory = target.parent
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{target.name}.{os.getpid()}.{nacl.utils.random(6).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_sealed_file(
    path: str | Path, passphrase: str, plaintext: bytes, *, ops: str | None = None
) -> None:
    """Seal and write in one step (the usual way to store a key)."""
    write_private_file(path, seal_secret(passphrase, plaintext, ops=ops))


def read_sealed_file(path: str | Path, passphrase: str) -> bytes:
    """Read and open a sealed file; a missing/unreadable file is :class:`CorruptKeyFile`."""
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise CorruptKeyFile(f"key file cannot be read: {type(exc).__name__}") from exc
    return open_secret(passphrase, blob)
