"""A real network for integration tests: an `rssn-hub` process and `rssn-node` processes.

Everything goes through the public CLIs and HTTP, exactly as an operator would.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.processes import ServiceProcess, base_env, free_port, wait_until

HUB_PASS = "hub passphrase for tests"
NODE_PASS = "node passphrase for tests"


def cli(tool: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run `python -m <tool>.cli` and return stdout (raises with output on failure)."""
    proc = subprocess.run(
        [sys.executable, "-c", f"from {tool}.cli import main; main()", *args],
        capture_output=True, text=True, env=env, timeout=180, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} {args[0]} failed ({proc.returncode}):\n{proc.stdout}\n"
                           f"{proc.stderr[-3000:]}")
    return proc.stdout


@dataclass
class NodeProc:
    node_id: str
    data_dir: Path
    port: int
    key: str
    proc: ServiceProcess
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60.0,
                            headers={"Authorization": f"Bearer {self.key}"})

    def get(self, path: str, **params: Any) -> Any:
        with self.api() as c:
            r = c.get(path, params=params)
            r.raise_for_status()
            return r.json()

    def post(self, path: str, body: Any) -> httpx.Response:
        with self.api() as c:
            return c.post(path, json=body)

    def referrals(self, **params: Any) -> list[dict[str, Any]]:
        params.setdefault("limit", 1000)
        items: list[dict[str, Any]] = self.get("/api/v1/referrals", **params)["items"]
        return items


@dataclass
class Net:
    root: Path
    spawn: Callable[..., ServiceProcess]
    hub_port: int = field(default_factory=free_port)
    hub: ServiceProcess | None = None
    nodes: dict[str, NodeProc] = field(default_factory=dict)

    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}"

    def hub_env(self) -> dict[str, str]:
        # Short leases: an un-acked item comes back quickly after a node crash.
        return base_env({"RSSN_HUB_PASSPHRASE": HUB_PASS, "RSSN_HUB_LEASE_SECONDS": "2"})

    def start_hub(self) -> ServiceProcess:
        d = self.root / "hub"
        cli("hub", "init", "--data-dir", str(d), env=self.hub_env())
        self.hub = self.spawn(
            [sys.executable, "-c", "from hub.cli import main; main()", "serve",
             "--data-dir", str(d), "--port", str(self.hub_port)],
            name="hub", env=self.hub_env(), health_url=f"{self.hub_url}/healthz",
        )
        return self.hub

    def add_node(self, node_id: str, org: str, country: str, *, start: bool = True,
                 extra_env: dict[str, str | None] | None = None) -> NodeProc:
        out = cli("hub", "invite", "--data-dir", str(self.root / "hub"), "--node-id", node_id,
                  "--org", org, "--country", country, env=self.hub_env())
        token = out.strip().splitlines()[-1]
        env = base_env({"RSSN_NODE_PASSPHRASE": NODE_PASS, "RSSN_NODE_POLL_WAIT": "5",
                        **(extra_env or {})})
        d = self.root / node_id
        cli("node", "init", "--data-dir", str(d), "--hub", self.hub_url, "--node-id", node_id,
            "--token", token, env=env)
        key = cli("node", "api-key", "create", "--data-dir", str(d), "--name", "tests",
                  env=env).strip().splitlines()[-1]
        port = free_port()
        proc = self.spawn(
            [sys.executable, "-c", "from node.cli import main; main()", "serve",
             "--data-dir", str(d), "--port", str(port)],
            name=node_id, env=env, health_url=f"http://127.0.0.1:{port}/healthz",
            start=start,
        )
        n = NodeProc(node_id, d, port, key, proc, env)
        self.nodes[node_id] = n
        return n


def wait_status(node: NodeProc, referral_id: str, status: str, timeout: float = 120) -> Any:
    def check() -> Any:
        d = node.get(f"/api/v1/referrals/{referral_id}")
        return d if d["status"] == status else None

    return wait_until(check, timeout=timeout, interval=0.2,
                      message=f"{node.node_id}: {referral_id} -> {status}")
