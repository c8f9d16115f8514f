"""Fixtures for hub tests: a real `rssn-hub` process on a free port, and node clients."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers.processes import ServiceProcess, base_env
from tests.hub.client import NodeClient

PASSPHRASE = "correct horse battery staple"
RSSN_HUB = str(Path(sys.executable).parent / "rssn-hub")


def hub_env(db_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {
        "RSSN_HUB_PASSPHRASE": PASSPHRASE,
        "RSSN_KDF_PROFILE": "interactive",
        "RSSN_HUB_SWEEP_SECONDS": "0.5",
        "RSSN_HUB_LEASE_SECONDS": "2",
        **extra,
    }
    if db_url:
        env["RSSN_HUB_DB"] = db_url
    return env


def run_cli(args: list[str], env: dict[str, str], check: bool = True
            ) -> subprocess.CompletedProcess[str]:
    full_env = base_env(env)
    if "RSSN_HUB_DB" not in env:
        full_env.pop("RSSN_HUB_DB", None)
    proc = subprocess.run(
        [RSSN_HUB, *args], env=full_env, capture_output=True, text=True, timeout=300,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"rssn-hub {args[0]} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


@dataclass
class Hub:
    data_dir: Path
    port: int
    env: dict[str, str]
    proc: ServiceProcess
    clients: list[NodeClient] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cli([args[0], "--data-dir", str(self.data_dir), *args[1:]], self.env, check)

    def invite(self, node_id: str, org: str = "Test Org", country: str = "MX") -> str:
        out = self.cli("invite", "--node-id", node_id, "--org", org, "--country", country)
        return out.stdout.strip().splitlines()[-1]

    def revoke(self, node_id: str) -> None:
        self.cli("revoke", "--node-id", node_id)

    def client(self, node_id: str) -> NodeClient:
        c = NodeClient(self.url, node_id)
        self.clients.append(c)
        return c

    def enrolled(self, node_id: str, org: str = "Test Org", country: str = "MX") -> NodeClient:
        c = self.client(node_id)
        r = c.enroll(self.invite(node_id, org, country))
        assert r.status_code == 201, r.text
        c.login()
        return c

    def log_text(self) -> str:
        return self.proc.log_text()


StartHub = Callable[..., Hub]


@pytest.fixture
def start_hub(
    spawn_service: Callable[..., ServiceProcess], free_port: Callable[[], int], tmp_path: Path
) -> Iterator[StartHub]:
    """start_hub(name="hub", db_url=None, serve_args=(), **env) -> a running, initialised hub."""
    hubs: list[Hub] = []

    def start(name: str = "hub", db_url: str | None = None, data_dir: Path | None = None,
              serve_args: tuple[str, ...] = (), **extra: str) -> Hub:
        env = hub_env(db_url, **extra)
        d = data_dir or tmp_path / name
        init = run_cli(["init", "--data-dir", str(d)], env)
        assert "fingerprint SHA256:" in init.stdout
        port = free_port()
        proc = spawn_service(
            [RSSN_HUB, "serve", "--data-dir", str(d), "--port", str(port), *serve_args],
            name=name,
            health_url=f"http://127.0.0.1:{port}/readyz",
            env={**env, "RSSN_HUB_DB": db_url} if db_url else {**env, "RSSN_HUB_DB": None},
        )
        hub = Hub(d, port, env, proc)
        hubs.append(hub)
        return hub

    yield start
    for h in hubs:
        for c in h.clients:
            c.close()


@pytest.fixture
def hub(start_hub: StartHub) -> Hub:
    return start_hub()


@pytest.fixture(autouse=True)
def _no_inherited_hub_db(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's RSSN_HUB_DB must not redirect tests to a shared database.
    if os.environ.get("RSSN_HUB_DB"):
        monkeypatch.delenv("RSSN_HUB_DB")
