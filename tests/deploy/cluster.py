"""Real `rssn-hub` and `rssn-node` processes for the deployment tests (scale-out, backup and
restore, upgrades).

Why not tests/fault's Network as it is: these tests need several hub processes on one
database, nodes given several hub URLs, nodes started from a restored data directory and
databases built at an older schema revision. The query helpers on tests/fault's NodeProc
(outbound statuses, processed counts, outbox states) are reused so every suite compares
sent, delivered and processed the same way.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.samples import sample_referral
from tests.fault.harness import Link, NodeProc, run_sql
from tests.helpers.processes import ServiceProcess, base_env, free_port, wait_until

__all__ = ["HUB_PASS", "NODE_PASS", "Hubs", "Link", "NodeProc", "cli", "start_node"]

HUB_PASS = "hub passphrase for deploy tests"
NODE_PASS = "node passphrase for deploy tests"


def cli(tool: str, args: Iterable[str], env: dict[str, str], *,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `rssn-hub`/`rssn-node` (``tool`` = "hub"/"node") as the operator would."""
    proc = subprocess.run(
        [sys.executable, "-c", f"from {tool}.cli import main; main()", *args],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"rssn-{tool} {list(args)[:1]} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


def node_env(db_url: str | None = None, **extra: str | None) -> dict[str, str]:
    return base_env({"RSSN_NODE_PASSPHRASE": NODE_PASS, "RSSN_NODE_POLL_WAIT": "3",
                     "RSSN_NODE_DB": db_url, "RSSN_LOG_LEVEL": None, **extra})


@dataclass
class Hubs:
    """One hub database served by any number of `rssn-hub serve` processes."""

    root: Path
    spawn: Callable[..., ServiceProcess]
    db_url: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, ServiceProcess] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.root / "hub"

    @property
    def env(self) -> dict[str, str]:
        return base_env({
            "RSSN_HUB_PASSPHRASE": HUB_PASS,
            # An item handed out by a process that then dies comes back after 3 s.
            "RSSN_HUB_LEASE_SECONDS": "3",
            "RSSN_HUB_SWEEP_SECONDS": "1",
            "RSSN_HUB_DB": self.db_url,
            "RSSN_HUB_LOG_LEVEL": None,
            **self.extra_env,
        })

    @property
    def store_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'hub.db'}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return cli("hub", [args[0], "--data-dir", str(self.data_dir), *args[1:]], self.env,
                   check=check)

    def init(self) -> str:
        """`rssn-hub init`; returns its stdout."""
        return self.cli("init").stdout

    def start(self, name: str = "hub", *, port: int | None = None) -> ServiceProcess:
        port = port or self.ports.get(name) or free_port()
        self.ports[name] = port
        proc = self.spawn(
            [sys.executable, "-c", "from hub.cli import main; main()", "serve",
             "--data-dir", str(self.data_dir), "--port", str(port)],
            name=name, env=self.env, health_url=f"http://127.0.0.1:{port}/readyz",
        )
        self.procs[name] = proc
        return proc

    def url(self, name: str = "hub") -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def invite(self, node_id: str, org: str = "Test Org", country: str = "KE") -> str:
        out = self.cli("invite", "--node-id", node_id, "--org", org, "--country", country)
        return out.stdout.strip().splitlines()[-1]

    def sql(self, query: str, **params: Any) -> list[tuple[Any, ...]]:
        return run_sql(self.store_url, query, params)


def enroll(hubs: Hubs, node_id: str, hub_urls: list[str], env: dict[str, str],
           data_dir: Path) -> str:
    """`rssn-node init` (one `--hub` per URL) and an API key; returns the key."""
    token = hubs.invite(node_id)
    args = ["init", "--data-dir", str(data_dir), "--node-id", node_id, "--token", token]
    for url in hub_urls:
        args += ["--hub", url]
    cli("node", args, env)
    out = cli("node", ["api-key", "create", "--data-dir", str(data_dir), "--name", "tests"], env)
    return out.stdout.strip().splitlines()[-1]


def start_node(spawn: Callable[..., ServiceProcess], node_id: str, data_dir: Path, key: str,
               env: dict[str, str], *, name: str | None = None, db_url: str | None = None,
               start: bool = True) -> NodeProc:
    port = free_port()
    proc = spawn(
        [sys.executable, "-c", "from node.cli import main; main()", "serve",
         "--data-dir", str(data_dir), "--port", str(port)],
        name=name or node_id, env=env, health_url=f"http://127.0.0.1:{port}/healthz",
        start=start,
    )
    return NodeProc(node_id, data_dir, port, key, proc, env, db_url)


def send_many(src: NodeProc, dst: NodeProc, count: int, offset: int = 0) -> set[str]:
    """Create ``count`` referrals src -> dst through the local API; their ids."""
    return {src.send(dst.node_id, sample_referral(offset + i)) for i in range(count)}


def inbound_ids(node: NodeProc, sender: str) -> set[str]:
    return {r[0] for r in node.sql("SELECT id FROM referrals WHERE direction = 'inbound' "
                                   "AND from_node = :s", s=sender)}


def wait_received(src: NodeProc, dst: NodeProc, ids: set[str], *, timeout: float = 120) -> None:
    """Every referral in ``ids`` reached ``dst`` and its receipt came back to ``src``."""

    def done() -> bool:
        st = src.outbound(dst.node_id)
        return all(st.get(i) == "received" for i in ids)

    try:
        wait_until(done, timeout=timeout, interval=0.5, message="referrals received")
    except TimeoutError as exc:
        st = Counter(src.outbound(dst.node_id).get(i, "missing") for i in ids)
        raise TimeoutError(f"{exc}: {src.node_id}->{dst.node_id} {dict(st)}, "
                           f"outbox {dict(src.outbox_states())}") from None


def wait_outbox_sent(node: NodeProc, *, timeout: float = 120) -> None:
    wait_until(lambda: not node.outbox_states().get("pending"), timeout=timeout, interval=0.5,
               message=f"{node.node_id}'s outbox sent")


def pause(seconds: float) -> None:
    """Let background workers run (never a correctness condition; see wait_until)."""
    time.sleep(seconds)
