"""Known-answer tests from the RFCs, so a broken binding to libsodium is caught (issue 2)."""

from __future__ import annotations

import nacl.bindings
import nacl.signing

from protocol import SigningKeyPair, canonical_bytes


def test_rfc8032_ed25519_test_1() -> None:
    sk = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    pk = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    sig = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    kp = SigningKeyPair.generate(sk)
    assert kp.public == pk
    assert kp.sign(b"") == sig
    nacl.signing.VerifyKey(pk).verify(b"", sig)


def test_rfc8032_ed25519_test_2() -> None:
    sk = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
    pk = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
    sig = bytes.fromhex(
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
    )
    kp = SigningKeyPair.generate(sk)
    assert kp.public == pk and kp.sign(bytes([0x72])) == sig


def test_rfc7748_x25519_section_6_1() -> None:
    a_sk = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    a_pk = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    b_sk = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    b_pk = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    assert nacl.bindings.crypto_scalarmult_base(a_sk) == a_pk
    assert nacl.bindings.crypto_scalarmult_base(b_sk) == b_pk
    assert nacl.bindings.crypto_scalarmult(a_sk, b_pk) == shared
    assert nacl.bindings.crypto_scalarmult(b_sk, a_pk) == shared


def test_rfc8785_examples() -> None:
    # RFC 8785 section 3.2.2 / appendix: member order by UTF-16 code units, number forms
    assert canonical_bytes({"b": 2, "a": 1, "€": 0, "\r": 3}) == b'{"\\r":3,"a":1,"b":2,"\xe2\x82\xac":0}'
    assert canonical_bytes([1e21, 1e-7, 0.000001, -0.0, 333333333.33333329]) == (
        b"[1e+21,1e-7,0.000001,0,333333333.3333333]"
    )
    assert canonical_bytes({"literals": [None, True, False]}) == b'{"literals":[null,true,false]}'


def test_sealed_box_with_rng_is_libsodiums_sealed_box() -> None:
    """Our deterministic path (for vectors) must open with libsodium's crypto_box_seal_open."""
    from protocol.envelope import _seal_key
    from protocol.keys import EncryptionKeyPair

    kp = EncryptionKeyPair.generate()
    stream = iter(range(1000))
    sealed = _seal_key(b"k" * 32, kp.public, lambda n: bytes(next(stream) % 256 for _ in range(n)))
    assert nacl.bindings.crypto_box_seal_open(sealed, kp.public, kp.secret) == b"k" * 32
