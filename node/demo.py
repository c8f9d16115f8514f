"""`make demo`: a hub and three member nodes on loopback, referrals walked through their lifecycle.

Why a script rather than docker-compose: it must work on a fresh clone with nothing but
the project's virtualenv. Everything is real: separate `rssn-hub` and `rssn-node`
processes, HTTP between them, SQLite files in a temporary directory, keys sealed
with a passphrase set in the children's environment. Every process is stopped at
exit, also on Ctrl-C and on errors.

    python -m node.demo [--keep-running]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from node.samples import sample_referral

HUB_PASS = "demo hub passphrase"  # noqa: S105 - throwaway demo data in a temp dir
NODE_PASS = "demo node passphrase"  # noqa: S105 - throwaway demo data
COORDINATOR = "coordinator@demo.rssn.invalid"
COORDINATOR_PASS = "demo console password"  # noqa: S105 - throwaway demo data

MEMBERS = [
    ("casa-refugio-mx", "Casa Refugio Tapachula", "MX"),
    ("asistencia-legal-gt", "Asistencia Legal Guatemala", "GT"),
    ("acnur-cr", "UNHCR Costa Rica", "CR"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _py(module: str, *args: str) -> list[str]:
    return [sys.executable, "-c", f"from {module}.cli import main; main()", *args]


class Processes:
    """Children in their own process groups; all stopped at exit, whatever happens."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        atexit.register(self.stop_all)

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,  # noqa: S603
                                env=env, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def stop_all(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()


def _run(args: list[str], env: dict[str, str]) -> str:
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=180,  # noqa: S603
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args[3:5])} failed:\n{out.stdout}{out.stderr[-2000:]}")
    return out.stdout


def _wait(what: str, check: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)


@dataclass
class Member:
    node_id: str
    org: str
    country: str
    port: int
    key: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0,
                            headers={"Authorization": f"Bearer {self.key}"})

    def call(self, method: str, path: str, body: Any = None) -> Any:
        with self.client() as c:
            r = c.request(method, path, json=body)
        if r.status_code >= 400:
            raise RuntimeError(f"{self.node_id} {method} {path}: {r.status_code} {r.text[:300]}")
        return r.json()


def _parse(ts: str) -> datetime:
    return datetime.strptime(ts.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")


def _console_session(hub_url: str) -> httpx.Client:
    """Sign in to the hub's console as the demo's regional coordinator, like a browser."""
    c = httpx.Client(base_url=hub_url, timeout=30.0, follow_redirects=False)
    page = c.get("/console/login")
    m = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    if page.status_code != 200 or m is None:
        raise RuntimeError(f"console sign-in page: HTTP {page.status_code}")
    r = c.post("/console/login", data={"email": COORDINATOR, "password": COORDINATOR_PASS,
                                       "csrf_token": m.group(1), "next": "/console/"})
    if r.status_code != 303 or r.headers.get("location") != "/console/":
        raise RuntimeError(f"console sign-in refused: HTTP {r.status_code}")
    return c


def _hub_view(hub_url: str, threads: dict[str, str]) -> list[str]:
    """The hub's view of the demo's referrals: the console's referral list (GET
    /console/api/referrals), built from its ledger of content-free metadata."""
    c = _console_session(hub_url)
    try:
        r = c.get("/console/api/referrals")
    finally:
        c.close()
    if r.status_code != 200:
        raise RuntimeError(f"console referral list: HTTP {r.status_code}")
    items = {i["thread"]: i for i in r.json()["items"]}

    def rel(ts: str, base: datetime) -> str:
        return f"+{(_parse_s(ts) - base).total_seconds():.0f}s" if ts else "-"

    row = "  {:<4} {:<20} {:<20} {:<9} {:<12} {:<10} {:<9} {:<9} {:<9} {}"
    lines = [row.format("ref", "from", "to", "priority", "category", "status", "sent",
                        "received", "accepted", "completed")]
    for label, thread in threads.items():
        i = items.get(thread)
        if i is None:
            lines.append(f"  {label:<4} (not in the console's list)")
            continue
        sent = _parse_s(i["sent_at"])
        lines.append(row.format(
            label, i["from_node"], i["to_node"], i["priority"] or "-", i["category"] or "-",
            i["status"], i["sent_at"][11:19], rel(i["received_at"], sent),
            rel(i["accepted_at"], sent), rel(i["completed_at"], sent)))
    return lines


def _parse_s(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--keep-running", action="store_true",
                        help="leave the hub and nodes running and print their URLs")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="rssn-demo-"))
    logs = root / "logs"
    logs.mkdir()
    procs = Processes(logs)

    def on_term(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # Even when started in the background (SIGINT ignored), Ctrl-C / kill -INT stop everything.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    env = {**os.environ, "RSSN_HUB_PASSPHRASE": HUB_PASS, "RSSN_NODE_PASSPHRASE": NODE_PASS,
           "RSSN_KDF_PROFILE": os.environ.get("RSSN_KDF_PROFILE", "interactive"),
           "RSSN_NODE_POLL_WAIT": "10", "PYTHONUNBUFFERED": "1", "RSSN_LOG_LEVEL": "INFO"}
    ok = False
    try:
        run_demo(root, procs, env, keep_running=args.keep_running)
        ok = True
    except KeyboardInterrupt:
        print("\nstopping (interrupted)")
        ok = args.keep_running
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"\ndemo failed: {exc}\nlogs are in {logs}", file=sys.stderr)
    finally:
        procs.stop_all()
        if ok:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


def run_demo(root: Path, procs: Processes, env: dict[str, str], *, keep_running: bool) -> None:
    t_start = time.monotonic()
    hub_dir = root / "hub"
    hub_port = _free_port()
    hub_url = f"http://127.0.0.1:{hub_port}"
    print(f"rssn demo: one hub and three member nodes on 127.0.0.1 (data in {root})")
    _run(_py("hub", "init", "--data-dir", str(hub_dir)), env)
    _run(_py("hub", "user", "add", "--data-dir", str(hub_dir), "--email", COORDINATOR,
             "--role", "regional"), {**env, "RSSN_CONSOLE_PASSWORD": COORDINATOR_PASS})
    procs.start("hub", _py("hub", "serve", "--data-dir", str(hub_dir), "--port", str(hub_port)),
                env)
    _wait("hub", lambda: httpx.get(f"{hub_url}/healthz", timeout=2).status_code == 200)
    print(f"  hub                  {hub_url}")
    members: dict[str, Member] = {}
    for node_id, org, country in MEMBERS:
        m = Member(node_id, org, country, _free_port())
        out = _run(_py("hub", "invite", "--data-dir", str(hub_dir), "--node-id", node_id,
                       "--org", org, "--country", country), env)
        token = out.strip().splitlines()[-1]
        d = root / node_id
        _run(_py("node", "init", "--data-dir", str(d), "--hub", hub_url, "--node-id", node_id,
                 "--token", token), env)
        m.key = _run(_py("node", "api-key", "create", "--data-dir", str(d), "--name", "demo"),
                     env).strip().splitlines()[-1]
        procs.start(node_id, _py("node", "serve", "--data-dir", str(d), "--port", str(m.port)),
                    env)
        members[node_id] = m
    def healthy(url: str) -> bool:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200

    for m in members.values():
        _wait(m.node_id, lambda url=m.url: healthy(url))  # type: ignore[misc]
        print(f"  {m.node_id:<20} {m.url:<24} {m.org} ({m.country})")
    mx, gt, cr = (members[n] for n, _, _ in MEMBERS)
    print(f"  ready in {time.monotonic() - t_start:.1f}s\n")

    # Who refers whom (all people are fictional).
    plan = [
        ("R1", mx, gt, 0, "accept, start, complete"),
        ("R2", mx, cr, 1, "accept, start, complete"),
        ("R3", gt, cr, 2, "decline (no capacity)"),
        ("R4", mx, gt, 3, "accept, then the person withdraws consent"),
        ("R5", cr, mx, 4, "accept, start, complete"),
    ]
    print("Sending referrals through the nodes' local APIs (POST /api/v1/referrals):")
    sent: dict[str, tuple[Member, Member, str]] = {}
    for label, frm, to, n, story in plan:
        doc = sample_referral(n, organization=frm.org)
        r = frm.call("POST", "/api/v1/referrals", {"to": to.node_id, "referral": doc})
        sent[label] = (frm, to, r["id"])
        print(f"  {label} {r['id']}  {frm.node_id} -> {to.node_id}  "
              f"[{r['priority']}/{r['category']}]  {story}")

    def at(m: Member, rid: str, status: str) -> Any:
        return _wait(f"{m.node_id} sees {rid} {status}",
                     lambda: m.call("GET", f"/api/v1/referrals/{rid}")["status"] == status)

    for _frm, to, rid in sent.values():
        at(to, rid, "received")

    def move(label: str, *steps: tuple[str, str | None, str | None]) -> None:
        frm, to, rid = sent[label]
        for status, note, reason in steps:
            body: dict[str, Any] = {"status": status}
            if note:
                body["note"] = note
            if reason:
                body["reason_code"] = reason
            to.call("POST", f"/api/v1/referrals/{rid}/status", body)
            at(frm, rid, status)

    move("R1", ("accepted", "Appointment tomorrow 9:00", None), ("in_progress", None, None),
         ("completed", "Legal representation arranged", None))
    move("R2", ("accepted", None, None), ("in_progress", None, None), ("completed", None, None))
    move("R3", ("declined", "No shelter places this month", "no_capacity"))
    move("R4", ("accepted", None, None))
    mx_, _, r4 = sent["R4"]
    mx_.call("POST", f"/api/v1/referrals/{r4}/withdraw-consent", {"note": "Called to withdraw"})
    _wait("consent withdrawal acknowledged",
          lambda: mx_.call("GET", f"/api/v1/referrals/{r4}")["consent_withdrawal_acknowledged_at"])
    move("R5", ("accepted", None, None), ("in_progress", None, None), ("completed", None, None))

    print("\nJourneys (sender's record; time since the referral was created):")
    for label, (frm, to, rid) in sent.items():
        d = frm.call("GET", f"/api/v1/referrals/{rid}")
        other = to.call("GET", f"/api/v1/referrals/{rid}")
        t0 = _parse(d["created_at"])
        print(f"  {label} {rid}  {frm.node_id} -> {to.node_id}")
        for h in d["history"]:
            dt = (_parse(h["at"]) - t0).total_seconds()
            note = f"  \"{h['note']}\"" if h.get("note") else ""
            print(f"      +{dt:6.2f}s  {h['actor']:<20} {h['event']}{note}")
        restricted = "  (restricted: consent withdrawn, content withheld)" \
            if other["restricted"] else ""
        print(f"      now: {d['status']} at {frm.node_id}, {other['status']} at "
              f"{to.node_id}{restricted}")
    print("\nThe hub's view of the same referrals: its console's referral list, read as the "
          "regional\ncoordinator (GET /console/api/referrals). Ledger metadata only: no names, "
          "no documents.\nSent is UTC; the other times are seconds after sending.")
    for line in _hub_view(hub_url, {label: rid for label, (_f, _t, rid) in sent.items()}):
        print(line)
    total = time.monotonic() - t_start
    print(f"\nAll {len(sent)} referrals reached their final state in {total:.1f}s.")
    if keep_running:
        print("\nStill running (Ctrl-C to stop everything):")
        print(f"  {'hub':<20} {hub_url}/docs")
        print(f"  {'console':<20} {hub_url}/console/   sign in as {COORDINATOR} "
              f"(password: {COORDINATOR_PASS})")
        for m in members.values():
            print(f"  {m.node_id:<20} {m.url}/docs   API key: {m.key}")
        print(f"  data and logs: {root}")
        while all(p.poll() is None for _, p in procs.procs):
            time.sleep(1)
        raise RuntimeError("a service stopped unexpectedly")
    else:
        print("Stopping the hub and the nodes.")


if __name__ == "__main__":
    sys.exit(main())
