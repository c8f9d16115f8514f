"""A real network for fault, hostile and security tests: `rssn-hub` and `rssn-node` processes.

Everything goes through the public CLIs and HTTP on 127.0.0.1, as an operator would run it:
`rssn-hub init/serve/invite/revoke`, `rssn-node init/serve/api-key create`, the node's local
API. What a test may additionally do, and why:

* SIGKILL and restart any process (ServiceProcess.kill9): a crash, not a shutdown.
* Move the wall clock of the whole network (``use_shared_clock()`` before starting
  anything, then ``set_clock("+72h")``): every process runs under libfaketime (LD_PRELOAD of the library
  shipped in the ``libfaketime`` wheel) reading its offset from one file, so the hub and the
  nodes see time pass through the ordinary system calls, with no test hook in the product.
  The monotonic clock is left alone (timeouts stay real).
* Cut a node's link to the hub (``Link``): a TCP relay between the node and the hub that
  can drop every connection and refuse new ones, the way a network outage looks to a node.
* Read the databases (``Hub.sql``, ``NodeProc.sql``) to compare what was sent, delivered and
  processed. Tests never write to them, except to take a lock (see test_database.py).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from tests.helpers.processes import ServiceProcess, base_env, free_port, wait_until

HUB_PASS = "hub passphrase for reliability tests"
NODE_PASS = "node passphrase for reliability tests"

__all__ = [
    "HUB_PASS",
    "NODE_PASS",
    "HubProc",
    "Link",
    "Network",
    "NodeProc",
    "Refused",
    "clock_env",
    "faketime_library",
]


def faketime_library() -> str:
    """Path of libfaketime.so.1 shipped in the ``libfaketime`` wheel (a dev dependency)."""
    spec = importlib.util.find_spec("libfaketime")
    if spec is None or spec.origin is None:
        raise RuntimeError("the libfaketime package is not installed (pip install -e '.[dev]')")
    lib = Path(spec.origin).parent / "vendor" / "libfaketime" / "src" / "libfaketime.so.1"
    if not lib.is_file():
        raise RuntimeError(f"libfaketime.so.1 not found at {lib}")
    return str(lib)


def clock_env(clock_file: Path | None) -> dict[str, str | None]:
    """Environment that runs a process on the network's shared, shiftable wall clock.

    libfaketime reads the offset ("+0", "+72h", "+15d") from ``clock_file`` and re-reads it
    every second, so a test moves the wall clock of every running process at once, the way
    time passes for a network left alone. The monotonic clock is not faked: timeouts,
    backoff and leases measured on it stay real.
    """
    if clock_file is None:
        return {"LD_PRELOAD": None, "FAKETIME": None, "FAKETIME_TIMESTAMP_FILE": None}
    return {
        "LD_PRELOAD": faketime_library(),
        "FAKETIME_TIMESTAMP_FILE": str(clock_file),
        "FAKETIME_CACHE_DURATION": "1",
        "DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def _cli(tool: str, args: Iterable[str], env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", f"from {tool}.cli import main; main()", *args],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} {list(args)[:2]} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1)
                            if url.startswith("postgresql://") else url,
                            poolclass=sa.pool.NullPool)


def run_sql(url: str, query: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(query), params or {})]
    finally:
        engine.dispose()


class Refused(AssertionError):
    """The node answered a request with a 4xx problem (not to be retried)."""


# --- a cuttable link ---------------------------------------------------------------------------


class Link:
    """A TCP relay 127.0.0.1:port -> 127.0.0.1:target that can be cut and restored.

    Cut: every open connection is closed and new ones are accepted and closed at once, so
    the node sees the hub as unreachable (its retries back off) while the hub runs on.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._cut = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", self.port))
        self._server.listen(128)
        self._server.settimeout(0.5)
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True, name=f"link-{self.port}").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        self._cut.set()
        self.cuts += 1
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def restore(self) -> None:
        self._cut.clear()

    @property
    def is_cut(self) -> bool:
        return self._cut.is_set()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        with contextlib.suppress(OSError):
            self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut.is_set():
                with contextlib.suppress(OSError):
                    client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                with contextlib.suppress(OSError):
                    client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._conns |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data or self._cut.is_set():
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)


# --- processes --------------------------------------------------------------------------------


@dataclass
class HubProc:
    data_dir: Path
    port: int
    db_url: str | None
    proc: ServiceProcess
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def store_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'hub.db'}"

    def cli(self, *args: str) -> str:
        return _cli("hub", [args[0], "--data-dir", str(self.data_dir), *args[1:]], self.env)

    def invite(self, node_id: str, org: str, country: str) -> str:
        out = self.cli("invite", "--node-id", node_id, "--org", org, "--country", country)
        return out.strip().splitlines()[-1]

    def revoke(self, node_id: str) -> None:
        self.cli("revoke", "--node-id", node_id)

    def sql(self, query: str, **params: Any) -> list[tuple[Any, ...]]:
        return run_sql(self.store_url, query, params)


@dataclass
class NodeProc:
    node_id: str
    data_dir: Path
    port: int
    key: str
    proc: ServiceProcess
    env: dict[str, str]
    db_url: str | None = None
    link: Link | None = None
    _client: httpx.Client | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def store_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'node.db'}"

    def api(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.url, timeout=120.0,
                                        headers={"Authorization": f"Bearer {self.key}"})
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def get(self, path: str, **params: Any) -> Any:
        r = self.api().get(path, params=params)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: Any) -> httpx.Response:
        return self.api().post(path, json=body)

    def send(self, to: str, referral: dict[str, Any]) -> str:
        """Create a referral through the local API; returns its id (the thread id)."""
        r = self.post("/api/v1/referrals", {"to": to, "referral": referral})
        if r.status_code not in (201, 202):
            cls = Refused if r.status_code < 500 else RuntimeError
            raise cls(f"{self.node_id}: referral not taken {r.status_code} {r.text[:300]}")
        return str(r.json()["id"])

    def cli(self, *args: str) -> str:
        return _cli("node", [args[0], *args[1:]], self.env)

    def knows(self, *node_ids: str) -> None:
        """Wait until this node's verified directory lists ``node_ids`` (forces a refresh)."""
        wait_until(lambda: set(node_ids) <= {i["node_id"] for i in
                                             self.get("/api/v1/directory")["items"]},
                   timeout=120, interval=1.0, message=f"{self.node_id} knows {node_ids}")

    def sql(self, query: str, **params: Any) -> list[tuple[Any, ...]]:
        return run_sql(self.store_url, query, params)

    # -- what the comparisons read ------------------------------------------------------------

    def outbound(self, to: str | None = None) -> dict[str, str]:
        """Outbound referral id -> status."""
        q = "SELECT id, status FROM referrals WHERE direction = 'outbound'"
        if to:
            return {r[0]: r[1] for r in self.sql(q + " AND to_node = :to", to=to)}
        return {r[0]: r[1] for r in self.sql(q)}

    def processed_referrals(self, sender: str) -> Counter[str]:
        """How many times this node processed each referral from ``sender`` (history rows)."""
        rows = self.sql("SELECT referral_id FROM history WHERE event = 'received' "
                        "AND actor = :me AND referral_id IN (SELECT id FROM referrals WHERE "
                        "direction = 'inbound' AND from_node = :s)", me=self.node_id, s=sender)
        return Counter(r[0] for r in rows)

    def processed_receipts(self, recipient: str) -> Counter[str]:
        """How many receipts from ``recipient`` this node applied, per outbound referral."""
        rows = self.sql("SELECT referral_id FROM history WHERE event = 'received' "
                        "AND actor = :r AND referral_id IN (SELECT id FROM referrals WHERE "
                        "direction = 'outbound')", r=recipient)
        return Counter(r[0] for r in rows)

    def quarantined(self) -> list[tuple[Any, ...]]:
        return self.sql("SELECT item_key, message_id, from_node, code FROM quarantine")

    def outbox_states(self) -> Counter[str]:
        return Counter(r[0] for r in self.sql("SELECT state FROM outbox"))


class Network:
    """One hub and its nodes under ``root``; processes are started through ``spawn``."""

    def __init__(self, root: Path, spawn: Callable[..., ServiceProcess]) -> None:
        self.root = root
        self.spawn = spawn
        self.hub: HubProc | None = None
        self.nodes: dict[str, NodeProc] = {}
        self.links: list[Link] = []
        self.clock_file: Path | None = None

    def use_shared_clock(self) -> None:
        """Run every process started from now on with the shiftable wall clock."""
        self.clock_file = self.root / "faketime"
        self.clock_file.write_text("+0\n")

    def set_clock(self, offset: str) -> None:
        """Move the network's wall clock to real time ``offset`` (e.g. "+72h") and wait until
        every running service's HTTP ``Date`` header shows it."""
        import email.utils
        from datetime import UTC, datetime, timedelta

        assert self.clock_file is not None, "call use_shared_clock() before starting processes"
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(offset + "\n")
        tmp.replace(self.clock_file)
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[offset[-1]]
        shift = timedelta(seconds=float(offset[:-1]) * unit)
        target = datetime.now(UTC) + shift - timedelta(seconds=5)
        urls = [p.url for p in [self.hub, *self.nodes.values()] if p is not None and p.proc.running]

        def shifted() -> bool:
            for url in urls:
                date = httpx.get(url + "/healthz", timeout=10).headers["date"]
                if email.utils.parsedate_to_datetime(date) < target:
                    return False
            return True

        wait_until(shifted, timeout=60, interval=0.5, message=f"every service at {offset}")

    def hub_env(self, db_url: str | None,
                extra: dict[str, str] | None = None) -> dict[str, str]:
        env = base_env({
            "RSSN_HUB_PASSPHRASE": HUB_PASS,
            # Short leases and sweeps: an un-acked item comes back quickly after a crash,
            # an expired one is noticed within a second.
            "RSSN_HUB_LEASE_SECONDS": "3",
            "RSSN_HUB_SWEEP_SECONDS": "1",
            "RSSN_HUB_DB": db_url,
            **clock_env(self.clock_file),
            **(extra or {}),
        })
        return env

    def start_hub(self, *, db_url: str | None = None,
                  extra_env: dict[str, str] | None = None) -> HubProc:
        d = self.root / "hub"
        env = self.hub_env(db_url, extra_env)
        _cli("hub", ["init", "--data-dir", str(d)], env)
        port = free_port()
        proc = self.spawn(
            [sys.executable, "-c", "from hub.cli import main; main()", "serve",
             "--data-dir", str(d), "--port", str(port)],
            name="hub", env=env, health_url=f"http://127.0.0.1:{port}/readyz",
        )
        self.hub = HubProc(d, port, db_url, proc, env)
        return self.hub

    def add_node(self, node_id: str, org: str, country: str, *, start: bool = True,
                 via_link: bool = False, db_url: str | None = None,
                 extra_env: dict[str, str | None] | None = None) -> NodeProc:
        assert self.hub is not None, "start the hub first"
        token = self.hub.invite(node_id, org, country)
        link = None
        hub_url = self.hub.url
        if via_link:
            link = Link(self.hub.port)
            self.links.append(link)
            hub_url = link.url
        env = base_env({
            "RSSN_NODE_PASSPHRASE": NODE_PASS,
            "RSSN_NODE_POLL_WAIT": "5",
            "RSSN_NODE_DB": db_url,
            **clock_env(self.clock_file),
            **(extra_env or {}),
        })
        d = self.root / node_id
        _cli("node", ["init", "--data-dir", str(d), "--hub", hub_url, "--node-id", node_id,
                      "--token", token], env)
        key = _cli("node", ["api-key", "create", "--data-dir", str(d), "--name", "tests"],
                   env).strip().splitlines()[-1]
        port = free_port()
        proc = self.spawn(
            [sys.executable, "-c", "from node.cli import main; main()", "serve",
             "--data-dir", str(d), "--port", str(port)],
            name=node_id, env=env, health_url=f"http://127.0.0.1:{port}/healthz", start=start,
        )
        n = NodeProc(node_id, d, port, key, proc, env, db_url, link)
        self.nodes[node_id] = n
        return n

    def close(self) -> None:
        for n in self.nodes.values():
            n.close()
        for link in self.links:
            link.close()

    def all_logs(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.hub is not None:
            out["hub"] = self.hub.proc.log_text()
        for n in self.nodes.values():
            out[n.node_id] = n.proc.log_text()
        return out


def wait_all(condition: Callable[[], Any], *, timeout: float, message: str) -> Any:
    return wait_until(condition, timeout=timeout, interval=0.5, message=message)


def env_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}
