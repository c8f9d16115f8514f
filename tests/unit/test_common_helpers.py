"""The test harness itself: processes, ports, polling, database fixtures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.helpers import pg as pg_helpers
from tests.helpers.processes import ServiceProcess, free_port, wait_until

SERVER = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1"]


def test_free_ports_are_distinct() -> None:
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20


def test_spawn_kill9_restart_and_logs(
    spawn_service: Callable[..., ServiceProcess], port: int
) -> None:
    proc = spawn_service(
        [*SERVER, str(port)], name="web", health_url=f"http://127.0.0.1:{port}/"
    )
    first_pid = proc.pid
    assert proc.running
    proc.kill9()
    assert not proc.running
    assert proc.returncode == -signal.SIGKILL
    proc.restart()
    assert proc.running and proc.pid != first_pid
    assert proc.starts == 2
    assert "start #2 of web" in proc.log_text()
    assert proc.log_text().count('"GET / HTTP/1.1" 200') >= 2  # one health check per start


def test_terminate_is_graceful_and_idempotent(
    spawn_service: Callable[..., ServiceProcess], port: int
) -> None:
    proc = spawn_service(
        [*SERVER, str(port)], name="web", health_url=f"http://127.0.0.1:{port}/"
    )
    proc.terminate()
    assert not proc.running
    proc.terminate()
    proc.cleanup()


def test_env_is_inherited_with_overrides(
    spawn_service: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    script = (
        "import os; e = os.environ; "
        "print(e['RSSN_KDF_PROFILE'], e.get('X_TEST'), e.get('HOME'))"
    )
    proc = spawn_service(
        [sys.executable, "-c", script], name="env", env={"X_TEST": "yes", "HOME": None}
    )
    proc.wait_for_log("interactive yes None")
    assert proc.stdout_path.parent == tmp_path / "logs"


def test_process_exiting_early_is_reported_with_its_log(
    spawn_service: Callable[..., ServiceProcess], port: int
) -> None:
    with pytest.raises(RuntimeError, match="exited with code 3") as info:
        spawn_service(
            [sys.executable, "-c", "import sys; print('boot failed: bad config'); sys.exit(3)"],
            name="broken",
            health_url=f"http://127.0.0.1:{port}/healthz",
        )
    assert "boot failed: bad config" in str(info.value)


def test_json_logs_and_wait_for_log(
    spawn_service: Callable[..., ServiceProcess],
) -> None:
    script = (
        "import json, sys; print('plain'); "
        "print(json.dumps({'event': 'ready', 'port': 1})); sys.stdout.flush()"
    )
    proc = spawn_service([sys.executable, "-c", script], name="json")
    found = proc.wait_for_log(lambda d: d.get("event") == "ready")
    assert found == {"event": "ready", "port": 1}
    assert proc.json_logs() == [found]


def test_process_group_is_killed(
    spawn_service: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time; "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        f"open({str(pid_file)!r}, 'w').write(str(c.pid)); time.sleep(600)"
    )
    proc = spawn_service([sys.executable, "-c", script], name="parent")
    child_pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), timeout=60))
    proc.kill9()

    def child_gone() -> bool:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            return True
        # A zombie (killed, not yet reaped by init) counts as gone.
        stat = Path(f"/proc/{child_pid}/stat")
        return stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z"

    wait_until(child_gone, timeout=60, message="child process to die")


def test_wait_until_times_out_with_last_error() -> None:
    def never() -> bool:
        raise ValueError("still not")

    with pytest.raises(TimeoutError) as info:
        wait_until(never, timeout=0.3, interval=0.05)
    assert isinstance(info.value.__cause__, ValueError)


def test_pg_url_is_a_fresh_database(pg_url: str) -> None:
    conninfo = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        assert name is not None and str(name[0]).startswith("rssn_test_")
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)


def test_pg_url_factory_databases_are_distinct_and_dropped(
    pg_url_factory: Callable[[], str],
) -> None:
    a, b = pg_url_factory(), pg_url_factory()
    assert a != b
    name, _url = pg_helpers.create_database()
    pg_helpers.drop_database(name)
    with psycopg.connect(pg_helpers.ADMIN_CONNINFO) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert row is None


def test_db_url_fixture(db_url: str) -> None:
    assert db_url.startswith(("sqlite:///", "postgresql+psycopg://"))


def test_kdf_profile_is_fast_in_tests() -> None:
    assert os.environ["RSSN_KDF_PROFILE"] == "interactive"


def test_unreachable_pg_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        pg_helpers, "ADMIN_CONNINFO", "host=127.0.0.1 port=1 user=postgres connect_timeout=5"
    )
    reason = pg_helpers.pg_unreachable_reason()
    assert reason is not None and "OperationalError" in reason


@pytest.mark.parametrize(("require", "outcome"), [("0", "1 skipped"), ("1", "1 error")])
def test_pg_fixture_skips_or_fails_when_unreachable(require: str, outcome: str) -> None:
    """Run one PG test in a child pytest pointed at a closed port."""
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "RSSN_TEST_PG_ADMIN": "host=127.0.0.1 port=1 user=postgres connect_timeout=5",
        "RSSN_REQUIRE_PG": require,
    }
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
            "tests/unit/test_common_helpers.py::test_pg_url_is_a_fresh_database",
        ],
        cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    output = result.stdout + result.stderr
    assert outcome in output, output
    assert "PostgreSQL not reachable at 127.0.0.1:5432" in output
    if require == "1":
        assert "RSSN_REQUIRE_PG=1" in output
