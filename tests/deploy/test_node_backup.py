"""`rssn-node backup` while the node serves, `rssn-node restore` into a new directory, and the
restored node carrying on with the same identity.

The timeline is built so that every kind of message crosses the backup moment:

* before the backup, settled both ways (``early``);
* queued in the node's outbox, unsent, when the backup is taken (``queued``: the node's
  link to the hub is cut);
* waiting at the hub for the node when the backup is taken, acknowledged by the old node
  after it (``waiting``), and arriving after the backup, also acknowledged by the old node
  (``after``);
* sent by the old node after the backup (``late``);
* arriving at the hub while the old node is stopped, before the restore (``offline``);
* sent and received by the restored node (``restored``).

What a restore must do, and what it cannot (see docs/DEPLOY_NODE.md "6. Restore"): the
restored node resends its outbox with the same message ids, so the recipient processes
``queued`` once; it fetches what the hub still holds for it (``offline``) once; it never sees
again what the old node acknowledged after the backup (``waiting``, ``after``), because the
hub deleted those items on acknowledgement. The backup is taken with
deploy/scripts/node-backup.sh and the real command, so the timer's script is covered too.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from node.keystore import load_keys
from protocol import b64u
from tests.deploy.cluster import (
    NODE_PASS,
    Hubs,
    Link,
    cli,
    enroll,
    inbound_ids,
    node_env,
    send_many,
    start_node,
    wait_outbox_sent,
    wait_received,
)
from tests.deploy.tools import DEPLOY, ROOT, explain, run
from tests.helpers.processes import ServiceProcess, wait_until

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def databases(request: pytest.FixtureRequest) -> Callable[[], str | None]:
    """Where the hub's and the nodes' databases live: SQLite files, or fresh PostgreSQL ones."""
    if request.param == "sqlite":
        return lambda: None
    factory: Callable[[], str] = request.getfixturevalue("pg_url_factory")
    return factory


def _node_backup_script(data_dir: Path, out_dir: Path, env: dict[str, str]) -> Path:
    """deploy/scripts/node-backup.sh with the real `rssn-node` of this checkout."""
    done = run(["sh", str(DEPLOY / "scripts" / "node-backup.sh"), str(data_dir), str(out_dir),
                "30"], env={**env, "RSSN_NODE_BIN": str(ROOT / ".venv" / "bin" / "rssn-node")})
    assert done.returncode == 0, explain(done)
    [archive] = sorted(out_dir.glob("rssn-node-*.backup"))
    digest = (out_dir / f"{archive.name}.sha256").read_text().split()[0]
    assert digest == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert oct(archive.stat().st_mode & 0o777) == "0o600"
    return archive


def test_backup_while_serving_then_restore_into_new_directory(
    tmp_path: Path, spawn_service: Callable[..., ServiceProcess],
    databases: Callable[[], str | None],
) -> None:
    hubs = Hubs(tmp_path, spawn_service, db_url=databases())
    hubs.init()
    hubs.start()
    link = Link(hubs.ports["hub"])
    a_db = databases()
    a_env, b_env = node_env(a_db), node_env(databases())
    a_dir, b_dir = tmp_path / "ngo-a", tmp_path / "ngo-b"
    a_key = enroll(hubs, "ngo-a", [link.url], a_env, a_dir)
    b_key = enroll(hubs, "ngo-b", [hubs.url()], b_env, b_dir)
    a = start_node(spawn_service, "ngo-a", a_dir, a_key, a_env, db_url=a_db)
    b = start_node(spawn_service, "ngo-b", b_dir, b_key, b_env, db_url=b_env.get("RSSN_NODE_DB"))
    try:
        early_ab, early_ba = send_many(a, b, 3), send_many(b, a, 3, offset=10)
        wait_received(a, b, early_ab)
        wait_received(b, a, early_ba)

        # The backup moment: a's link is cut, so it holds `queued` and the hub holds `waiting`.
        link.cut()
        queued = send_many(a, b, 3, offset=20)
        waiting = send_many(b, a, 3, offset=30)
        wait_outbox_sent(b)
        assert a.outbox_states().get("pending", 0) >= len(queued)
        archive = _node_backup_script(a_dir, tmp_path / "backups", a_env)

        # After the backup the old node carries on: sends `queued`, acks `waiting` and `after`.
        after = send_many(b, a, 2, offset=40)
        link.restore()
        wait_received(a, b, queued)
        wait_received(b, a, waiting | after)
        late = send_many(a, b, 2, offset=50)
        wait_received(a, b, late)
        a.proc.terminate()
        a.close()
        offline = send_many(b, a, 2, offset=60)
        wait_outbox_sent(b)

        # -- the archive: keys byte-identical and still sealed, manifest with checksums.
        with tarfile.open(archive) as tar:
            names = set(tar.getnames())
            keys_copy = tar.extractfile("keys.sealed.json").read()  # type: ignore[union-attr]
            everything = b"".join(tar.extractfile(m).read()  # type: ignore[union-attr]
                                  for m in tar.getmembers())
        db_member = "node.pgdump" if a_db else "node.db"
        assert names == {"manifest.json", "node.json", "keys.sealed.json", db_member}
        assert keys_copy == (a_dir / "keys.sealed.json").read_bytes()
        seed = load_keys(a_dir / "keys.sealed.json", NODE_PASS).signing.seed
        for secret in (seed, b64u(seed).encode(), seed.hex().encode()):
            assert secret not in everything
        assert NODE_PASS.encode() not in everything

        # -- restore: refused over the live directory, refused with a wrong passphrase.
        a2_db = databases()
        a2_env = node_env(a2_db)
        a2_dir = tmp_path / "ngo-a-restored"
        over = cli("node", ["restore", "--data-dir", str(a_dir), "--from", str(archive)],
                   node_env(a_db), check=False)
        assert over.returncode == 1 and "already holds a node" in over.stderr, over.stderr
        wrong = cli("node", ["restore", "--data-dir", str(a2_dir), "--from", str(archive)],
                    {**a2_env, "RSSN_NODE_PASSPHRASE": "not the passphrase"}, check=False)
        assert wrong.returncode == 1, wrong.stdout + wrong.stderr
        assert "passphrase does not open the backed-up keys" in wrong.stderr
        assert len(wrong.stderr.strip().splitlines()) == 1, wrong.stderr
        assert not (a2_dir / "node.json").exists()
        damaged = tmp_path / "damaged.backup"
        damaged.write_bytes(_flip_member_byte(archive.read_bytes(), "keys.sealed.json"))
        bad = cli("node", ["restore", "--data-dir", str(a2_dir), "--from", str(damaged)],
                  a2_env, check=False)
        assert bad.returncode == 1 and "does not match its checksum" in bad.stderr, bad.stderr
        assert not (a2_dir / "node.json").exists()

        done = cli("node", ["restore", "--data-dir", str(a2_dir), "--from", str(archive)], a2_env)
        assert "restored node ngo-a" in done.stdout, done.stdout
        again = cli("node", ["restore", "--data-dir", str(a2_dir), "--from", str(archive)],
                    a2_env, check=False)
        assert again.returncode == 1 and "already holds a node" in again.stderr
        cli("node", ["restore", "--data-dir", str(a2_dir), "--from", str(archive), "--force"],
            a2_env)
        assert (a2_dir / "keys.sealed.json").read_bytes() == keys_copy
        assert oct(a2_dir.stat().st_mode & 0o777) == "0o700"
        for name in ("keys.sealed.json", "node.json"):
            assert oct((a2_dir / name).stat().st_mode & 0o777) == "0o600"

        # A wrong passphrase at `serve` is one clear line too.
        refused = cli("node", ["serve", "--data-dir", str(a2_dir), "--port", "9"],
                      {**a2_env, "RSSN_NODE_PASSPHRASE": "not the passphrase"}, check=False)
        assert refused.returncode == 1 and "wrong passphrase" in refused.stderr, refused.stderr

        # -- the restored node serves with the same identity (same API key, same hub link).
        a2 = start_node(spawn_service, "ngo-a", a2_dir, a_key, a2_env, name="ngo-a-restored",
                        db_url=a2_db)
        wait_until(lambda: offline <= inbound_ids(a2, "ngo-b"), timeout=120, interval=0.5,
                   message="mail waiting at the hub fetched by the restored node")
        wait_outbox_sent(a2)
        restored = send_many(a2, b, 2, offset=70)
        wait_received(a2, b, restored)
        reply = send_many(b, a2, 1, offset=80)
        wait_received(b, a2, reply)

        # -- the comparison.
        # b processed every referral from ngo-a exactly once, including `queued`, which the
        # restored node resent with the same message ids.
        from_a = b.processed_referrals("ngo-a")
        assert set(from_a) == early_ab | queued | late | restored
        assert set(from_a.values()) == {1}, from_a
        # The restored node: what it had at the backup, plus what the hub still held for it.
        from_b = a2.processed_referrals("ngo-b")
        assert set(from_b) == early_ba | offline | reply
        assert set(from_b.values()) == {1}, from_b
        # What the old node acknowledged after the backup is not in the restored node.
        assert not (waiting | after) & inbound_ids(a2, "ngo-b")
        # `queued` was resent and answered as a duplicate by the hub (one stored copy each);
        # its receipts were collected by the old node, so the restored one still shows them
        # as requested (docs/DEPLOY_NODE.md says so).
        statuses = a2.outbound("ngo-b")
        assert {statuses[i] for i in queued} == {"requested"}
        assert {statuses[i] for i in early_ab | restored} == {"received"}
        assert late.isdisjoint(statuses)
        per_thread = dict(hubs.sql(
            "SELECT thread, COUNT(*) FROM messages WHERE kind = 'referral' AND sender = 'ngo-a' "
            "GROUP BY thread"))
        assert set(per_thread) == early_ab | queued | late | restored
        assert set(per_thread.values()) == {1}
        assert a2.quarantined() == [] and b.quarantined() == []
        assert not a2.outbox_states().get("failed")
        assert hubs.sql("SELECT COUNT(*) FROM mailbox WHERE recipient = 'ngo-a'")[0][0] == 0
        logs = a2.proc.log_text()
        assert "database_up_to_date" in logs, logs[-2000:]
    finally:
        link.close()
        for n in (a, b):
            n.close()


def _flip_member_byte(archive: bytes, member: str) -> bytes:
    """The same archive with one byte of ``member`` changed (a damaged copy)."""
    src = tarfile.open(fileobj=io.BytesIO(archive))
    out = io.BytesIO()
    with src, tarfile.open(fileobj=out, mode="w:gz") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()  # type: ignore[union-attr]
            if m.name == member:
                data = data[:-2] + bytes([data[-2] ^ 1]) + data[-1:]
            dst.addfile(m, io.BytesIO(data))
    return out.getvalue()


def test_restore_refuses_a_file_that_is_not_a_backup(tmp_path: Path) -> None:
    junk = tmp_path / "junk.backup"
    junk.write_bytes(os.urandom(2048))
    env = node_env()
    done = cli("node", ["restore", "--data-dir", str(tmp_path / "n"), "--from", str(junk)], env,
               check=False)
    assert done.returncode == 1
    assert "damaged or not an rssn-node backup" in done.stderr, done.stderr
    missing = cli("node", ["backup", "--data-dir", str(tmp_path / "none"), "--out",
                           str(tmp_path / "x.backup")], env, check=False)
    assert missing.returncode == 1 and "no enrolled node" in missing.stderr, missing.stderr
