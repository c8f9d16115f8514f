"""Keys at rest: sealing, typed failures, private atomic files."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import nacl.pwhash
import pytest

from common.secretstore import (
    CorruptKeyFile,
    SecretStoreError,
    WrongPassphrase,
    kdf_profile,
    open_secret,
    read_sealed_file,
    seal_secret,
    write_private_file,
    write_sealed_file,
)

argon = nacl.pwhash.argon2id
SECRET = b"\x00\x01ed25519-private-key-bytes\xff" * 2


def test_roundtrip_and_format() -> None:
    blob = seal_secret("correct horse", SECRET)
    doc = json.loads(blob)
    assert set(doc) == {"v", "kdf", "salt", "opslimit", "memlimit", "nonce", "ciphertext"}
    assert doc["v"] == 1 and doc["kdf"] == "argon2id"
    assert len(base64.b64decode(doc["salt"])) == argon.SALTBYTES
    assert open_secret("correct horse", blob) == SECRET
    assert SECRET not in blob


def test_each_seal_uses_fresh_salt_and_nonce() -> None:
    a, b = json.loads(seal_secret("pw", SECRET)), json.loads(seal_secret("pw", SECRET))
    assert a["salt"] != b["salt"] and a["nonce"] != b["nonce"]


def test_test_session_uses_interactive_profile() -> None:
    assert os.environ["RSSN_KDF_PROFILE"] == "interactive"
    doc = json.loads(seal_secret("pw", SECRET))
    assert (doc["opslimit"], doc["memlimit"]) == (
        argon.OPSLIMIT_INTERACTIVE,
        argon.MEMLIMIT_INTERACTIVE,
    )


def test_profile_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RSSN_KDF_PROFILE", raising=False)
    assert kdf_profile() == "moderate"
    monkeypatch.setenv("RSSN_KDF_PROFILE", "interactive")
    assert kdf_profile() == "interactive"
    assert kdf_profile("sensitive") == "sensitive"
    with pytest.raises(ValueError):
        kdf_profile("weak")


def test_wrong_passphrase_is_typed_and_quiet() -> None:
    blob = seal_secret("right passphrase", SECRET)
    with pytest.raises(WrongPassphrase) as info:
        open_secret("wrong passphrase", blob)
    assert isinstance(info.value, SecretStoreError)
    assert "passphrase" in str(info.value)
    assert "wrong passphrase for" in str(info.value)
    assert "right passphrase" not in str(info.value)
    assert info.value.__cause__ is None  # no library traceback chained in


def test_tampered_ciphertext_is_detected() -> None:
    doc = json.loads(seal_secret("pw", SECRET))
    raw = bytearray(base64.b64decode(doc["ciphertext"]))
    raw[-1] ^= 1
    doc["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(WrongPassphrase):
        open_secret("pw", json.dumps(doc).encode())


def _mutated(**changes: object) -> bytes:
    doc = json.loads(seal_secret("pw", SECRET))
    for key, value in changes.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize("blob", [b"", b"not json", b"[1,2]", b"\xff\xfe"])
def test_corrupt_documents(blob: bytes) -> None:
    with pytest.raises(CorruptKeyFile):
        open_secret("pw", blob)


@pytest.mark.parametrize(
    "changes",
    [
        {"v": 2},
        {"kdf": "scrypt"},
        {"salt": None},
        {"salt": "!!!not-base64!!!"},
        {"salt": base64.b64encode(b"short").decode()},
        {"nonce": base64.b64encode(b"x" * 5).decode()},
        {"ciphertext": base64.b64encode(b"tiny").decode()},
        {"opslimit": "3"},
        {"opslimit": True},
        {"opslimit": 10**9},
        {"memlimit": 1 << 40},
        {"memlimit": None},
    ],
)
def test_corrupt_fields(changes: dict[str, object]) -> None:
    with pytest.raises(CorruptKeyFile):
        open_secret("pw", _mutated(**changes))


def test_empty_passphrase_refused() -> None:
    with pytest.raises(ValueError):
        seal_secret("", SECRET)


def test_write_private_file_mode_and_atomic_replace(tmp_path: Path) -> None:
    target = tmp_path / "keys" / "node.key"
    write_private_file(target, b"first")
    assert target.read_bytes() == b"first"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600

    target.chmod(0o644)
    write_private_file(target, b"second")
    assert target.read_bytes() == b"second"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["node.key"]  # no temp files left


def test_private_file_ignores_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private_file(tmp_path / "k", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600


def test_sealed_file_helpers(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    write_sealed_file(path, "pw", SECRET)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_sealed_file(path, "pw") == SECRET
    with pytest.raises(WrongPassphrase):
        read_sealed_file(path, "nope")
    with pytest.raises(CorruptKeyFile):
        read_sealed_file(tmp_path / "missing.key", "pw")
