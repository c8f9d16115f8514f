"""Fixtures shared by the whole suite: real processes, real SQLite, real PostgreSQL.

Fixtures (see each docstring):

* ``spawn_service``  -- start a ``ServiceProcess`` (tests/helpers); always cleaned up.
* ``free_port``      -- the function; ``port`` -- one free port for this test.
* ``pg_url``         -- one fresh PostgreSQL database for the whole session.
* ``pg_url_factory`` -- call it for more fresh databases (dropped when the test ends).
* ``db_url``         -- parametrized: a SQLite file in ``tmp_path``, then a fresh PostgreSQL database.
* ``chromium``       -- path of Debian's chromium, or skip.

PostgreSQL tests skip with a visible reason when 127.0.0.1:5432 is unreachable,
unless ``RSSN_REQUIRE_PG=1`` (CI), which turns the skip into a failure.
Tests that use a PostgreSQL fixture get the ``pg`` marker automatically.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    # So `from tests.helpers import ...` works however pytest was started.
    sys.path.insert(0, str(ROOT))

# Sealing keys with the default "moderate" Argon2id profile costs ~1 s and
# 256 MiB each; the fast profile keeps the suite usable on a 2-core machine.
# Child processes inherit it. Set explicitly to another profile to override.
os.environ.setdefault("RSSN_KDF_PROFILE", "interactive")

from tests.helpers import pg as pg_helpers  # noqa: E402
from tests.helpers.processes import (  # noqa: E402
    DEFAULT_READY_TIMEOUT,
    ServiceProcess,
)
from tests.helpers.processes import free_port as _free_port  # noqa: E402

_PG_FIXTURES = frozenset({"pg_url", "pg_url_factory", "pg_available"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _PG_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.pg)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # Remember each phase's outcome so fixtures can dump service logs on failure.
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _test_failed(request: pytest.FixtureRequest) -> bool:
    node = request.node
    return any(
        getattr(getattr(node, f"rep_{when}", None), "failed", False) for when in ("setup", "call")
    )


# --- processes ------------------------------------------------------------------


@pytest.fixture
def free_port() -> Callable[[], int]:
    """The :func:`~tests.helpers.processes.free_port` function (call it for each port)."""
    return _free_port


@pytest.fixture
def port() -> int:
    """One free TCP port on 127.0.0.1."""
    return _free_port()


SpawnService = Callable[..., ServiceProcess]


@pytest.fixture
def spawn_service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SpawnService]:
    """Start service processes that are always stopped at teardown.

    ``spawn_service(args, *, name, health_url=None, env=None, cwd=None,
    ready_timeout=120, start=True) -> ServiceProcess``. Logs go to
    ``tmp_path/logs/<name>.{stdout,stderr}.log``; when the test fails their
    tails are printed in the teardown section of the report.
    """
    started: list[ServiceProcess] = []

    def spawn(
        args: Sequence[str],
        *,
        name: str,
        health_url: str | None = None,
        env: Mapping[str, str | None] | None = None,
        cwd: str | Path | None = None,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        start: bool = True,
    ) -> ServiceProcess:
        if any(p.name == name for p in started):
            raise ValueError(f"service name {name!r} already used in this test")
        proc = ServiceProcess(
            args,
            name=name,
            log_dir=tmp_path / "logs",
            env=env,
            cwd=cwd,
            health_url=health_url,
            ready_timeout=ready_timeout,
        )
        started.append(proc)
        if start:
            proc.start()
        return proc

    yield spawn

    failed = _test_failed(request)
    errors: list[BaseException] = []
    for proc in reversed(started):
        try:
            proc.cleanup()
        except BaseException as exc:  # keep stopping the others
            errors.append(exc)
        if failed:
            sys.stderr.write(proc.log_tail() + "\n")
    if errors:
        raise errors[0]


# --- PostgreSQL -------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_available() -> None:
    """Skip (or fail under RSSN_REQUIRE_PG=1) when PostgreSQL is unreachable."""
    reason = pg_helpers.pg_unreachable_reason()
    if reason is None:
        return
    message = f"PostgreSQL not reachable at 127.0.0.1:5432: {reason}"
    if os.environ.get("RSSN_REQUIRE_PG") == "1":
        pytest.fail(message + " (RSSN_REQUIRE_PG=1)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_url(pg_available: None) -> Iterator[str]:
    """SQLAlchemy URL (``postgresql+psycopg://``) of a fresh database shared by the session."""
    name, url = pg_helpers.create_database()
    try:
        yield url
    finally:
        pg_helpers.drop_database(name)


@pytest.fixture
def pg_url_factory(pg_available: None) -> Iterator[Callable[[], str]]:
    """Call to get the URL of another fresh database; all are dropped when the test ends."""
    names: list[str] = []

    def make() -> str:
        name, url = pg_helpers.create_database()
        names.append(name)
        return url

    yield make
    for name in names:
        pg_helpers.drop_database(name)


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)],
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database per test: SQLite file in ``tmp_path``, then fresh PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    factory: Callable[[], str] = request.getfixturevalue("pg_url_factory")
    return factory()


# --- browser ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of Debian's chromium for Playwright (``executable_path=``), or skip."""
    path = Path("/usr/bin/chromium")
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.skip("Debian chromium not installed (make test installs it as root)")
    return str(path)
