"""Enrollment: create keys, prove possession to the hub, pin the hub key.

Why the order (keys sealed on disk first, then enroll, then write the config): the
token is single-use, so once the hub has accepted our keys we must still have them;
if enrollment fails the fresh key file is removed and the operator simply retries.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from node.hub_client import HubClient, HubError
from node.keystore import generate_keys, save_keys
from node.settings import SOFTWARE_VERSION, NodeConfig, NodeSettings
from protocol import (
    ProtocolError,
    b64u,
    b64u_decode,
    canonical_bytes,
    enrollment_proof,
    fingerprint,
    format_time,
    signing_kid,
    validate_node_id,
    verify_directory,
)

__all__ = ["EnrollmentError", "enroll_node"]


class EnrollmentError(Exception):
    """One line for the operator: what went wrong (codes only)."""


def enroll_node(
    settings: NodeSettings,
    *,
    hub_url: str,
    node_id: str,
    token: str,
    passphrase: str,
    expect_hub_fingerprint: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> NodeConfig:
    from common.db import make_engine
    from node.runtime import DIRECTORY_KEY, migrate_db
    from node.store.queries import set_kv

    try:
        validate_node_id(node_id)
    except ProtocolError:
        raise EnrollmentError("node id must be a lowercase slug of 3-63 characters") from None
    if settings.config_path.exists() or settings.keys_path.exists():
        raise EnrollmentError(f"{settings.data_dir} already holds a node; use a new --data-dir")
    now = datetime.now(UTC).replace(microsecond=0)
    keys = generate_keys(node_id, now)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    save_keys(settings.keys_path, keys, passphrase)
    binding = keys.current_binding
    client = HubClient(hub_url, transport=transport)
    try:
        result: dict[str, Any] = client.enroll({
            "node_id": node_id,
            "token": token,
            "signing_key": b64u(keys.signing.public),
            "encryption_key": binding.to_json(),
            "proof": b64u(enrollment_proof(keys.signing, node_id, token, binding)),
            "software_version": SOFTWARE_VERSION,
        })
        hub_key = b64u_decode(result["hub_key"], length=32)
        if result.get("hub_kid") != signing_kid(hub_key):
            raise ProtocolError("hub_kid does not match hub_key")
        directory_bytes = canonical_bytes(result["directory"])
        verify_directory(directory_bytes, hub_key, now=datetime.now(UTC))
        fp = fingerprint(hub_key)
        if expect_hub_fingerprint and expect_hub_fingerprint != fp:
            raise EnrollmentError(f"hub key fingerprint {fp} is not the expected one")
        token_endpoint = str(result["token_endpoint"])
    except (HubError, ProtocolError, KeyError, TypeError, ValueError, EnrollmentError) as exc:
        settings.keys_path.unlink(missing_ok=True)
        if isinstance(exc, EnrollmentError):
            raise
        code = getattr(exc, "code", type(exc).__name__)
        detail = exc.problem.get("detail") if isinstance(exc, HubError) else None
        raise EnrollmentError(
            f"enrollment failed: {code}" + (f" ({detail})" if detail else "")) from None
    finally:
        client.close()
    config = NodeConfig(
        node_id=node_id, hub_url=",".join(client.hub_urls), hub_key=str(result["hub_key"]),
        hub_kid=str(result["hub_kid"]), hub_fingerprint=fp, token_endpoint=token_endpoint,
        enrolled_at=format_time(now), key_expires_at=format_time(binding.not_after),
    )
    migrate_db(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            set_kv(conn, DIRECTORY_KEY, directory_bytes.decode("utf-8"))
    finally:
        engine.dispose()
    settings.save_config(config)
    return config
