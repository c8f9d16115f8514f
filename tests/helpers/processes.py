"""Real service processes for integration and fault tests.

Why: the network's guarantees (nothing lost, processed once) are about real
processes dying at awkward moments, so tests start hubs and nodes as separate
OS processes on 127.0.0.1 free ports, kill them with SIGKILL, restart them and
read their logs. Every wait polls for a condition with a generous timeout; no
test should depend on how fast a loaded 2-core machine is.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import httpx

__all__ = [
    "DEFAULT_READY_TIMEOUT",
    "ServiceProcess",
    "base_env",
    "free_port",
    "python_cmd",
    "wait_until",
]

DEFAULT_READY_TIMEOUT = 120.0
_TERM_TIMEOUT = 30.0

_ports_lock = threading.Lock()
_ports_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and not handed out before in this run.

    There is an unavoidable window between choosing and binding; remembering
    earlier answers at least keeps two services of one test apart.
    """
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with _ports_lock:
            if port not in _ports_handed_out:
                _ports_handed_out.add(port)
                return port
    raise RuntimeError("no free port found")


def python_cmd(*args: str) -> list[str]:
    """``[sys.executable, *args]``: run with the test's interpreter (the project venv)."""
    return [sys.executable, *args]


def wait_until(
    condition: Callable[[], Any],
    *,
    timeout: float = 60.0,
    interval: float = 0.1,
    message: str = "condition",
) -> Any:
    """Poll ``condition`` until it returns something truthy; return that value.

    Exceptions raised by ``condition`` count as "not yet" (the last one is
    chained to the TimeoutError).
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"timed out after {timeout:.0f}s waiting for {message}"
            ) from last_exc
        time.sleep(interval)


def base_env(extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The test process's environment plus unbuffered output and the fast KDF profile.

    A value of ``None`` in ``extra`` removes that variable.
    """
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("RSSN_KDF_PROFILE", "interactive")
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


class ServiceProcess:
    """One service started with :class:`subprocess.Popen` in its own process group.

    stdout and stderr go to ``<log_dir>/<name>.stdout.log`` and
    ``<name>.stderr.log`` (appended across restarts, so a test can scan the
    whole history). Use as a context manager or call :meth:`cleanup`; the
    ``spawn_service`` fixture does that for you.
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        name: str,
        log_dir: Path,
        env: Mapping[str, str | None] | None = None,
        cwd: str | Path | None = None,
        health_url: str | None = None,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
    ) -> None:
        self.args = [str(a) for a in args]
        self.name = name
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = base_env(env)
        self.cwd = str(cwd) if cwd is not None else None
        self.health_url = health_url
        self.ready_timeout = ready_timeout
        self.stdout_path = self.log_dir / f"{name}.stdout.log"
        self.stderr_path = self.log_dir / f"{name}.stderr.log"
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._files: list[IO[bytes]] = []

    # --- lifecycle ------------------------------------------------------------

    def start(self, *, wait: bool = True) -> ServiceProcess:
        """Start the process (and wait until ``health_url`` answers, if given)."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self._close_files()
        self.starts += 1
        out = open(self.stdout_path, "ab")
        err = open(self.stderr_path, "ab")
        self._files = [out, err]
        if self.starts > 1:
            marker = f"--- test harness: start #{self.starts} of {self.name} ---\n".encode()
            out.write(marker)
            err.write(marker)
            out.flush()
            err.flush()
        self._proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,  # own session => own process group for killpg
        )
        if wait and self.health_url:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Poll ``health_url`` until it answers with a status below 400."""
        if not self.health_url:
            raise ValueError(f"{self.name}: no health_url to wait for")
        url = self.health_url
        deadline = time.monotonic() + (timeout if timeout is not None else self.ready_timeout)
        last_error = "no answer yet"
        while True:
            code = self.returncode
            if code is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {code} before {url} answered\n{self.log_tail()}"
                )
            try:
                response = httpx.get(url, timeout=5.0)
                if response.status_code < 400:
                    return
                last_error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last_error = type(exc).__name__
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{self.name} did not answer {url} in time ({last_error})\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def kill9(self) -> None:
        """SIGKILL the whole process group and reap it: a crash, not a shutdown."""
        self._signal_group(signal.SIGKILL)
        if self._proc is not None:
            # SIGKILL cannot be ignored, but a process in uninterruptible sleep (an fsync on
            # a loaded machine) dies only when the I/O returns: wait for it, generously.
            self._proc.wait(timeout=120)

    def terminate(self, timeout: float = _TERM_TIMEOUT) -> int | None:
        """SIGTERM the group, wait, then SIGKILL if needed; returns the exit code."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self._proc.wait(timeout=timeout)
        # Children that outlived the leader must not keep ports or files.
        self._signal_group(signal.SIGKILL)
        return self._proc.returncode

    stop = terminate

    def restart(self, *, kill: bool = False, wait: bool = True) -> ServiceProcess:
        """Stop (gracefully, or with SIGKILL when ``kill``) and start again with the same args."""
        if kill:
            self.kill9()
        else:
            self.terminate()
        return self.start(wait=wait)

    def cleanup(self) -> None:
        """Stop the process if it runs and close log files; idempotent."""
        try:
            self.terminate(timeout=10.0)
        finally:
            self._close_files()

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # --- state ---------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # --- logs ----------------------------------------------------------------

    def stdout_text(self) -> str:
        return self._read(self.stdout_path)

    def stderr_text(self) -> str:
        return self._read(self.stderr_path)

    def log_text(self) -> str:
        """stdout then stderr, everything since the first start."""
        return self.stdout_text() + self.stderr_text()

    def json_logs(self) -> list[dict[str, Any]]:
        """Every line of either stream that is a JSON object (structlog output)."""
        out: list[dict[str, Any]] = []
        for line in self.log_text().splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                out.append(doc)
        return out

    def wait_for_log(
        self, predicate: str | Callable[[dict[str, Any]], bool], *, timeout: float = 60.0
    ) -> Any:
        """Wait until a log line contains ``predicate`` (str) or a JSON line satisfies it."""
        if isinstance(predicate, str):
            needle = predicate
            return wait_until(
                lambda: needle in self.log_text(), timeout=timeout, message=f"log {needle!r}"
            )
        check = predicate
        return wait_until(
            lambda: next((d for d in self.json_logs() if check(d)), None),
            timeout=timeout,
            message="matching JSON log line",
        )

    def log_tail(self, lines: int = 60) -> str:
        out = self.stdout_text().splitlines()[-lines:]
        err = self.stderr_text().splitlines()[-lines:]
        return (
            f"--- {self.name} stdout (last {len(out)} lines) ---\n" + "\n".join(out)
            + f"\n--- {self.name} stderr (last {len(err)} lines) ---\n" + "\n".join(err)
        )

    # --- internals -------------------------------------------------------------

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def _close_files(self) -> None:
        for f in self._files:
            with contextlib.suppress(OSError):
                f.close()
        self._files = []

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def __repr__(self) -> str:
        return f"<ServiceProcess {self.name} pid={self.pid} running={self.running}>"
