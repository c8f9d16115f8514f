"""A real `rssn-hub` process for the node's unit-level tests, plus the tools to misbehave.

Why: the node must be tested against the hub it will meet, not a stand-in. One hub
process serves a whole test session (starting one costs seconds); every test enrols
fresh node ids, so tests never see each other's mailboxes. Failure is produced the
way it happens in the field: a real TCP proxy between node and hub that drops
connections, or a hub process that is stopped. Hostile envelopes are sealed with
protocol/ and submitted through the hub as a real enrolled node (tests/hub/client.py),
or, for what an honest hub refuses, shown refused by the hub first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa

from protocol import SigningKeyPair, b64u, canonical_bytes, parse_envelope
from tests.helpers.processes import ServiceProcess, base_env, free_port

HUB_PASSPHRASE = "node tests hub passphrase"
RSSN_HUB = str(Path(sys.executable).parent / "rssn-hub")


def hub_env() -> dict[str, str | None]:
    return {
        "RSSN_HUB_PASSPHRASE": HUB_PASSPHRASE,
        "RSSN_KDF_PROFILE": "interactive",
        # Expiry tests wait for the sweeper; short leases bring un-acked items back soon.
        "RSSN_HUB_SWEEP_SECONDS": "0.5",
        "RSSN_HUB_LEASE_SECONDS": "2",
        "RSSN_HUB_DB": None,  # a developer's PostgreSQL URL must not leak in
    }


@dataclass
class RealHub:
    """One `rssn-hub serve` on a free loopback port with its own data directory."""

    data_dir: Path
    port: int
    proc: ServiceProcess
    _engine: sa.Engine | None = field(default=None, repr=False)

    @classmethod
    def start(cls, root: Path) -> RealHub:
        import subprocess

        data_dir = root / "hub"
        env = base_env(hub_env())
        init = subprocess.run([RSSN_HUB, "init", "--data-dir", str(data_dir)], env=env,
                              capture_output=True, text=True, timeout=300, check=False)
        if init.returncode != 0:
            raise RuntimeError(f"rssn-hub init failed:\n{init.stdout}\n{init.stderr}")
        port = free_port()
        proc = ServiceProcess(
            [RSSN_HUB, "serve", "--data-dir", str(data_dir), "--port", str(port)],
            name="hub", log_dir=root / "logs", env=hub_env(),
            health_url=f"http://127.0.0.1:{port}/readyz",
        )
        proc.start()
        return cls(data_dir, port, proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def invite(self, node_id: str, org: str = "Test Org", country: str = "MX") -> str:
        """A one-time enrollment token, made by the hub's own code on the hub's database.

        Why not `rssn-hub invite`: a process per node would add about a second to every
        test; this is the function that command runs, on the same database file.
        """
        from common.db import make_engine, sqlite_url
        from hub.enrollment import create_invite

        if self._engine is None:
            self._engine = make_engine(sqlite_url(self.data_dir / "hub.db"))
        token, _ = create_invite(self._engine, node_id=node_id, organization=org,
                                 country=country)
        return token

    def cli(self, *args: str) -> str:
        """Run `rssn-hub <command> --data-dir <ours> ...` as an operator would."""
        import subprocess

        proc = subprocess.run([RSSN_HUB, args[0], "--data-dir", str(self.data_dir), *args[1:]],
                              env=base_env(hub_env()), capture_output=True, text=True,
                              timeout=300, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"rssn-hub {args[0]} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        self.proc.cleanup()


class TcpProxy:
    """A real TCP relay in front of the hub that can cut the line.

    `drop(n)` closes every open connection and then closes the next `n` connections
    right after accepting them (the node sees the server hang up without an answer);
    `down()` does that for every connection until `up()`.
    """

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._to_drop = 0
        self._down = False
        self.dropped = 0
        self._stopping = False
        threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def drop(self, n: int) -> None:
        with self._lock:
            self._to_drop = n
            self.dropped = 0
        self._cut_all()

    def down(self) -> None:
        with self._lock:
            self._down = True
        self._cut_all()

    def up(self) -> None:
        with self._lock:
            self._down = False
            self._to_drop = 0

    def close(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self._cut_all()

    def _cut_all(self) -> None:
        with self._lock:
            socks, self._open = list(self._open), set()
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refuse = self._down or self._to_drop > 0
                if self._to_drop > 0:
                    self._to_drop -= 1
                if refuse:
                    self.dropped += 1
            if refuse:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
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
                self._open -= {src, dst}


class RecordingTransport(httpx.HTTPTransport):
    """Plain HTTP that also notes each request's method and path (to count hub calls)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.method, request.url.path))
        return super().handle_request(request)

    def count(self, method: str, path: str) -> int:
        return self.calls.count((method, path))


def tamper_ciphertext(raw: bytes, signing: SigningKeyPair) -> bytes:
    """The same envelope with one ciphertext byte changed and the outer signature renewed.

    The hub (which checks only the outer signature) accepts it; the recipient cannot
    decrypt it: what a sender with a broken sealing step would produce.
    """
    env = parse_envelope(raw)
    ct = bytearray(env.ciphertext)
    ct[40] ^= 0x01
    changed = dataclasses.replace(env, ciphertext=bytes(ct), header_bytes=b"")
    sig = signing.sign(changed.outer_signing_input())
    return canonical_bytes({**json.loads(raw), "ciphertext": b64u(bytes(ct)), "sig": b64u(sig)})
