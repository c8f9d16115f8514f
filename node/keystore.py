"""The node's private keys, sealed at rest with the operator's passphrase.

Why: the Ed25519 signing key is the organisation's identity on the network and
the X25519 keys open every referral it ever received. They are stored only in
the data directory, sealed with Argon2id + SecretBox (common.secretstore), and
a wrong passphrase is a clear error (WrongPassphrase), never a crash.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from protocol import EncryptionKeyPair, KeyBinding, SigningKeyPair, b64u, b64u_decode

__all__ = ["KeyStoreError", "NodeKeys", "generate_keys", "get_passphrase", "load_keys", "save_keys"]

#: Encryption keys are bound for a year; `rssn-node status` shows when they expire.
ENCRYPTION_KEY_LIFETIME = timedelta(days=365)


class KeyStoreError(Exception):
    """One clear line for the operator (wrong passphrase, missing or corrupt key file)."""


@dataclass(frozen=True)
class NodeKeys:
    node_id: str
    signing: SigningKeyPair
    encryption: tuple[tuple[EncryptionKeyPair, KeyBinding], ...]

    @property
    def current_binding(self) -> KeyBinding:
        return max((b for _, b in self.encryption), key=lambda b: (b.not_before, b.kid))

    def encryption_by_kid(self) -> dict[str, EncryptionKeyPair]:
        return {b.kid: k for k, b in self.encryption}

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "node_id": self.node_id,
                "signing_seed": b64u(self.signing.seed),
                "encryption": [
                    {"secret": b64u(k.secret), "binding": b.to_json()} for k, b in self.encryption
                ],
            }
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> NodeKeys:
        doc = json.loads(data)
        return cls(
            node_id=doc["node_id"],
            signing=SigningKeyPair.generate(b64u_decode(doc["signing_seed"], length=32)),
            encryption=tuple(
                (
                    EncryptionKeyPair.generate(b64u_decode(e["secret"], length=32)),
                    KeyBinding.from_json(e["binding"]),
                )
                for e in doc["encryption"]
            ),
        )


def generate_keys(node_id: str, now: datetime) -> NodeKeys:
    signing = SigningKeyPair.generate()
    enc = EncryptionKeyPair.generate()
    binding = KeyBinding.create(signing, node_id, enc, now, now + ENCRYPTION_KEY_LIFETIME)
    return NodeKeys(node_id, signing, ((enc, binding),))


def get_passphrase(*, confirm: bool = False) -> str:
    """RSSN_NODE_PASSPHRASE, or a prompt when a terminal is attached."""
    from node.settings import PASSPHRASE_ENV

    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return value
    if not os.isatty(0):
        raise KeyStoreError(f"set {PASSPHRASE_ENV} (no terminal to prompt for the passphrase)")
    first = getpass.getpass("Node key passphrase: ")
    if confirm and getpass.getpass("Repeat passphrase: ") != first:
        raise KeyStoreError("passphrases do not match")
    if not first:
        raise KeyStoreError("an empty passphrase does not protect anything")
    return first


def save_keys(path: Path, keys: NodeKeys, passphrase: str) -> None:
    from common.secretstore import write_sealed_file

    write_sealed_file(path, passphrase, keys.to_bytes())


def load_keys(path: Path, passphrase: str) -> NodeKeys:
    from common.secretstore import CorruptKeyFile, WrongPassphrase, read_sealed_file

    if not Path(path).exists():
        raise KeyStoreError(f"no key file at {path} (run `rssn-node init`)")
    try:
        return NodeKeys.from_bytes(read_sealed_file(path, passphrase))
    except WrongPassphrase:
        raise KeyStoreError("wrong passphrase for the node's key file") from None
    except CorruptKeyFile as exc:
        raise KeyStoreError(f"key file unreadable: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyStoreError(f"key file contents invalid: {type(exc).__name__}") from None
