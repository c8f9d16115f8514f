"""Real hub and node processes for the measurements (loopback, temporary directories).

Why the bench drives the console scripts (`rssn-hub`, `rssn-node`) rather than
building apps in-process: the figures must be what an operator's processes do,
with their own interpreter, event loop and database connections. Children run
in their own sessions and are stopped by process id at the end of every
measurement, whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent
RSSN_HUB = str(BIN / "rssn-hub")
RSSN_NODE = str(BIN / "rssn-node")
HUB_PASS = "bench hub passphrase"  # noqa: S105 - throwaway keys in a temp dir
NODE_PASS = "bench node passphrase"  # noqa: S105
PG_ADMIN = os.environ.get("RSSN_BENCH_PG_ADMIN",
                          "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RSSN_HUB_", "RSSN_NODE_"))}
    env.update({
        "RSSN_HUB_PASSPHRASE": HUB_PASS,
        "RSSN_NODE_PASSPHRASE": NODE_PASS,
        "RSSN_KDF_PROFILE": "interactive",
        # Figures are about the work, not about writing one log line per request.
        "RSSN_HUB_LOG_LEVEL": "WARNING",
        "RSSN_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """User + system CPU time of a process (and its live children) so far."""
    def one(p: int) -> tuple[float, int]:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[1])

    total = one(pid)[0]
    if children:
        for d in Path("/proc").iterdir():
            if d.name.isdigit() and int(d.name) != pid:
                try:
                    t, ppid = one(int(d.name))
                except (OSError, ValueError, IndexError):
                    continue
                if ppid == pid:
                    total += t
    return total


def run(args: Sequence[str], env: dict[str, str]) -> str:
    out = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=300,  # noqa: S603
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} failed ({out.returncode}): "
                           f"{out.stderr[-1500:]}{out.stdout[-500:]}")
    return out.stdout


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None
              ) -> float:
    """Poll until `url` answers 200; returns time.perf_counter() of that answer."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as c:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"process for {url} exited with {proc.returncode}")
            try:
                if c.get(url).status_code == 200:
                    return time.perf_counter()
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
    raise TimeoutError(f"{url} did not answer")


class Processes:
    """Children in their own sessions; stopped (TERM, then KILL) by pid, never by name."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.spies: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, args: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(list(args), stdin=subprocess.DEVNULL, stdout=log, stderr=log,  # noqa: S603
                                env=env, start_new_session=True)
        log.close()
        self.procs.append(proc)
        self._maybe_profile(name, proc)
        return proc

    def _maybe_profile(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        """RSSN_BENCH_PROFILE=DIR: sample every service with py-spy (collapsed stacks in DIR).

        py-spy attaches by pid and writes its file when the service exits; it is not part of
        `make bench` (it costs CPU) but is how bench/README.md's "what bounded it" was found.
        """
        out = os.environ.get("RSSN_BENCH_PROFILE")
        spy = BIN / "py-spy"
        if not out or not spy.exists():
            return
        Path(out).mkdir(parents=True, exist_ok=True)
        target = Path(out) / f"{name}-{proc.pid}.txt"
        sp = subprocess.Popen([str(spy), "record", "--pid", str(proc.pid), "--rate", "250",  # noqa: S603
                               "--subprocesses", "--format", "raw", "-o", str(target),
                               *(["--gil"] if os.environ.get("RSSN_BENCH_PROFILE_GIL") else [])],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.spies.append(sp)

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for p in reversed(list(self.procs)):
            self.stop(p)
        for sp in self.spies:
            try:
                sp.wait(20)
            except subprocess.TimeoutExpired:
                sp.kill()
                sp.wait()
        self.spies.clear()


@contextlib.contextmanager
def workspace(prefix: str = "rssn-bench-") -> Iterator[tuple[Path, Processes]]:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    (root / "logs").mkdir()
    procs = Processes(root / "logs")
    try:
        yield root, procs
    except BaseException:
        print(f"  (logs kept in {root / 'logs'})", file=sys.stderr)
        procs.stop_all()
        raise
    else:
        procs.stop_all()
        shutil.rmtree(root, ignore_errors=True)


# -- PostgreSQL ---------------------------------------------------------------------------


def pg_reason() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute("SELECT 1")
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).strip()[:200]}"
    return None


def pg_url(name: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(PG_ADMIN)
    return (f"postgresql+psycopg://{info.get('user', 'postgres')}@{info.get('host', '127.0.0.1')}"
            f":{info.get('port', '5432')}/{name}")


def pg_admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(statement)  # type: ignore[arg-type]


def pg_create(name: str, template: str | None = None) -> str:
    pg_admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return pg_url(name)


def pg_drop(name: str) -> None:
    with contextlib.suppress(Exception):
        pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- hub and nodes ------------------------------------------------------------------------


@dataclass
class Hub:
    data_dir: Path
    env: dict[str, str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def init(self) -> None:
        run([RSSN_HUB, "init", "--data-dir", str(self.data_dir)], self.env)

    def invite(self, node_id: str, org: str, country: str = "MX") -> str:
        out = run([RSSN_HUB, "invite", "--data-dir", str(self.data_dir), "--node-id", node_id,
                   "--org", org, "--country", country], self.env)
        return out.strip().splitlines()[-1]

    def serve(self, procs: Processes, *, workers: int = 1, name: str = "hub") -> None:
        self.port = free_port()
        args = [RSSN_HUB, "serve", "--data-dir", str(self.data_dir), "--port", str(self.port),
                "--no-access-log"]
        if workers > 1:
            args += ["--workers", str(workers)]
        self.proc = procs.start(name, args, self.env)
        wait_http(f"{self.url}/readyz", proc=self.proc)

    def sqlite_path(self) -> Path:
        return self.data_dir / "hub.db"

    def mailbox_depth(self, node_id: str) -> int:
        """Waiting items for `node_id`, read straight from the hub's database (SQLite or PG)."""
        db = self.env.get("RSSN_HUB_DB")
        if db:
            import psycopg

            conninfo = db.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(conninfo) as c:
                row = c.execute("SELECT count(*) FROM mailbox WHERE recipient = %s",
                                (node_id,)).fetchone()
                return int(row[0]) if row else 0
        c2 = sqlite3.connect(f"file:{self.sqlite_path()}?mode=ro", uri=True, timeout=30)
        try:
            return int(c2.execute("SELECT count(*) FROM mailbox WHERE recipient = ?",
                                  (node_id,)).fetchone()[0])
        finally:
            c2.close()


@dataclass
class Member:
    """An enrolled node: its data directory (keys, config, database) and, when served, a port."""

    node_id: str
    org: str
    data_dir: Path
    env: dict[str, str]
    port: int = 0
    api_key: str = ""
    proc: subprocess.Popen[bytes] | None = None
    _identity: Any = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def init(self, hub: Hub) -> None:
        token = hub.invite(self.node_id, self.org)
        run([RSSN_NODE, "init", "--data-dir", str(self.data_dir), "--hub", hub.url,
             "--node-id", self.node_id, "--token", token], self.env)

    def create_api_key(self) -> str:
        out = run([RSSN_NODE, "api-key", "create", "--data-dir", str(self.data_dir),
                   "--name", "bench"], self.env)
        self.api_key = out.strip().splitlines()[-1]
        return self.api_key

    def serve_args(self) -> list[str]:
        if not self.port:
            self.port = free_port()
        return [RSSN_NODE, "serve", "--data-dir", str(self.data_dir), "--port", str(self.port),
                "--log-level", "WARNING"]

    def serve(self, procs: Processes) -> float:
        self.proc = procs.start(self.node_id, self.serve_args(), self.env)
        return wait_http(f"{self.url}/healthz", proc=self.proc)

    def identity(self) -> Any:
        """(config, keys) loaded from the data directory, for sealing in the bench process."""
        if self._identity is None:
            from node.keystore import load_keys
            from node.settings import NodeSettings

            s = NodeSettings(data_dir=self.data_dir)
            self._identity = (s.load_config(), load_keys(s.keys_path, NODE_PASS))
        return self._identity

    def db_path(self) -> Path:
        return self.data_dir / "node.db"

    def access_token(self) -> str:
        from node.hub_client import HubClient

        config, keys = self.identity()
        c = HubClient(config.hub_url, node_id=self.node_id, signing=keys.signing,
                      token_endpoint=config.token_endpoint)
        try:
            return c._access_token()
        finally:
            c.close()


# -- sealed envelopes (in worker processes: sealing is the slow part of preparing a run) --


def _seal_chunk(args: tuple[bytes, str, str, str, int, int]) -> list[bytes]:
    from node.samples import sample_referral
    from protocol import KeyBinding, SigningKeyPair, seal

    seed, sender, recipient, binding_json, start, count = args
    signing = SigningKeyPair.generate(seed)
    import json

    binding = KeyBinding.from_json(json.loads(binding_json))
    created = datetime.now(UTC).replace(microsecond=0)
    out = []
    for i in range(start, start + count):
        doc = sample_referral(i % 2 * 4, organization="Bench Shelter", now=created)
        rid = str(uuid.uuid4())
        env = seal(sender=sender, signing_key=signing, recipient=recipient,
                   recipient_key=binding, kind="referral", document=doc,
                   message_id=str(uuid.uuid4()), thread=rid, created_at=created,
                   meta={"priority": str(doc["priority"]), "category": "sgbv"})
        out.append(env.raw)
    return out


def seal_referrals(sender: Member, recipient: Member, n: int, procs: int = 2) -> list[bytes]:
    """`n` real referral envelopes from `sender` to `recipient` (valid, openable, distinct)."""
    _config, keys = sender.identity()
    _rconfig, rkeys = recipient.identity()
    binding = rkeys.current_binding
    import json

    bj = json.dumps(binding.to_json())
    step = max(1, -(-n // (procs * 4)))
    chunks = [(keys.signing.seed, sender.node_id, recipient.node_id, bj, i, min(step, n - i))
              for i in range(0, n, step)]
    with ProcessPoolExecutor(procs) as pool:
        parts = list(pool.map(_seal_chunk, chunks))
    return [raw for part in parts for raw in part]


def until(cond: Callable[[], Any], timeout: float, interval: float = 0.05,
          what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)
