"""`rssn-hub backup` of a serving hub with mail waiting, `rssn-hub restore` into a new
database, and the restored hub delivering that mail once, with the same hub key.

The dump's format is the one deploy/scripts/hub_db_backup.py writes and checks (both are
hub/backup.py), so the timer's files and the command's are interchangeable.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.deploy.cluster import (
    Hubs,
    enroll,
    node_env,
    send_many,
    start_node,
    wait_outbox_sent,
    wait_received,
)
from tests.deploy.tools import DEPLOY, explain, run
from tests.helpers.processes import ServiceProcess

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def hub_db(request: pytest.FixtureRequest) -> Callable[[], str | None]:
    if request.param == "sqlite":
        return lambda: None
    factory: Callable[[], str] = request.getfixturevalue("pg_url_factory")
    return factory


def _kid(proc: ServiceProcess) -> str:
    started = proc.wait_for_log(lambda d: d.get("event") == "hub_started")
    return str(started["kid"])


def test_hub_backup_restore_delivers_waiting_mail_once(
    tmp_path: Path, spawn_service: Callable[..., ServiceProcess],
    hub_db: Callable[[], str | None],
) -> None:
    hubs = Hubs(tmp_path / "old", spawn_service, db_url=hub_db())
    hubs.init()
    old = hubs.start("hub")
    kid = _kid(old)
    env_a, env_b = node_env(), node_env()
    key_a = enroll(hubs, "ngo-a", [hubs.url()], env_a, tmp_path / "ngo-a")
    key_b = enroll(hubs, "ngo-b", [hubs.url()], env_b, tmp_path / "ngo-b")
    a = start_node(spawn_service, "ngo-a", tmp_path / "ngo-a", key_a, env_a)
    b = start_node(spawn_service, "ngo-b", tmp_path / "ngo-b", key_b, env_b)
    try:
        early = send_many(a, b, 2)
        wait_received(a, b, early)
        b.proc.terminate()
        waiting = send_many(a, b, 4, offset=10)
        wait_outbox_sent(a)

        # Backup while the hub serves; the operator's script accepts the same file.
        dump = tmp_path / "backups" / "hub.backup"
        made = hubs.cli("backup", "--out", str(dump))
        assert "schema revision 0002_console" in made.stdout, made.stdout
        assert (dump.parent / "hub.backup.sha256").is_file()
        checked = run([sys.executable, str(DEPLOY / "scripts" / "hub_db_backup.py"), "verify",
                       "--from", str(dump)])
        assert checked.returncode == 0 and "ok" in checked.stdout, explain(checked)
        old.terminate()

        # Not over a database that holds a hub, unless --force.
        refused = hubs.cli("restore", "--from", str(dump), check=False)
        assert refused.returncode == 1 and "already holds data" in refused.stderr, refused.stderr

        new = Hubs(tmp_path / "new", spawn_service, db_url=hub_db())
        restored = new.cli("restore", "--from", str(dump))
        assert "schema revision 0002_console" in restored.stdout, restored.stdout
        proc = new.start("hub-restored", port=hubs.ports["hub"])  # the address nodes know
        assert _kid(proc) == kid
        assert "database_up_to_date" in proc.log_text()

        b.proc.start()
        wait_received(a, b, waiting)
        after = send_many(a, b, 1, offset=20)
        wait_received(a, b, after)
        processed = b.processed_referrals("ngo-a")
        assert set(processed) == early | waiting | after
        assert set(processed.values()) == {1}, processed
        assert b.quarantined() == [] and a.quarantined() == []
        assert new.sql("SELECT COUNT(*) FROM mailbox")[0][0] == 0
        delivered = new.sql("SELECT COUNT(*) FROM messages WHERE kind = 'referral' "
                            "AND delivered_at_ms IS NOT NULL")[0][0]
        assert delivered == len(early | waiting | after)
    finally:
        a.close()
        b.close()


def test_operator_script_is_the_hub_backup_module() -> None:
    """deploy/scripts/hub_db_backup.py is installed alone (the system python3 cannot import a
    pipx-installed rssn), so it is a copy of hub/backup.py; they must not drift apart."""
    from tests.deploy.tools import ROOT

    script = DEPLOY / "scripts" / "hub_db_backup.py"
    assert script.read_bytes() == (ROOT / "hub" / "backup.py").read_bytes(), (
        "run: cp hub/backup.py deploy/scripts/hub_db_backup.py")
    assert script.stat().st_mode & 0o111, "the script must be executable"
