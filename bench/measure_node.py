"""Node figures: start time, idle memory, catch-up after being offline, end-to-end latency.

All with real processes: a hub (`rssn-hub serve`) and nodes (`rssn-node serve`) on
loopback, SQLite files in a temporary directory, keys sealed at rest.

- node_start_s: exec of `rssn-node serve` until GET /healthz answers 200 (polled every
  10 ms). The node's keys are sealed with the default KDF profile (what an operator gets),
  so unsealing them is part of it.
- node_idle_rss_mb: VmRSS of that process after it has been up and idle (long-polling the
  hub) for a few seconds.
- catchup_10k_s: 10,000 real referrals wait in the hub for a node that is not running.
  Clock starts when the node's /healthz answers (its workers start with the app) and
  stops when the hub's mailbox for it is empty (every item acknowledged, which the node
  does only after committing) and its database holds the 10,000 referrals. The time from
  exec is reported too (catchup_10k_from_exec_s).
- e2e_latency_ms_p50/p99: referrals posted to the sender's local API at a steady 200/s
  (open loop, bench.loadgen.paced). For each, latency = the moment a read-only poller of
  the recipient's SQLite database (every 2 ms, WAL: it only sees committed rows) first
  sees the referral, minus the moment the sender's API call returned.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from bench.loadgen import build_request, load, paced
from bench.net import (
    RSSN_HUB,
    Hub,
    Member,
    base_env,
    seal_referrals,
    until,
    wait_http,
    workspace,
)
from bench.run import measure, record_note


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (to say what one referral costs whom)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _inbound(db: Path) -> int:
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return int(c.execute(
            "SELECT count(*) FROM referrals WHERE direction = 'inbound'").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        c.close()


# -- start and idle memory ------------------------------------------------------------------


@measure("node_start")
def _node_start(args: argparse.Namespace) -> dict[str, Any]:
    starts: list[float] = []
    rss: list[float] = []
    with workspace() as (root, procs):
        hub = Hub(root / "hub", base_env())
        hub.init()
        hub.serve(procs)
        # The default KDF profile, as `rssn-node init` gives an operator.
        env = base_env()
        env.pop("RSSN_KDF_PROFILE", None)
        m = Member("bench-start", "Bench Start", root / "node", env)
        m.init(hub)
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            m.proc = procs.start("node", m.serve_args(), env)
            t1 = wait_http(f"{m.url}/healthz", proc=m.proc)
            starts.append(t1 - t0)
            time.sleep(2.0 if args.quick else 5.0)
            rss.append(_rss_mb(m.proc.pid))
            procs.stop(m.proc)
    return {"node_start_s": statistics.median(starts), "node_idle_rss_mb": statistics.median(rss),
            "node_start_runs": starts, "node_idle_rss_runs": rss}


# -- catch-up -------------------------------------------------------------------------------


def _copy_world(tmpl: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(tmpl, dst)


@measure("catchup")
def _catchup(args: argparse.Namespace) -> dict[str, Any]:
    n = 2000 if args.quick else 10_000
    runs: list[float] = []
    from_exec: list[float] = []
    cpu: list[dict[str, float]] = []
    with workspace() as (root, procs):
        world = root / "template"
        env = base_env()
        hub = Hub(world / "hub", env)
        hub.init()
        hub.serve(procs)
        port = hub.port
        sender = Member("bench-sender", "Bench Sender", world / "sender", env)
        recipient = Member("bench-recipient", "Bench Recipient", world / "recipient", env)
        sender.init(hub)
        recipient.init(hub)
        envs = seal_referrals(sender, recipient, n)
        auth = {"Authorization": f"Bearer {sender.access_token()}"}
        reqs = [build_request("127.0.0.1", port, "/v1/messages/batch",
                              b'{"envelopes":[' + b",".join(envs[i:i + 500]) + b"]}", auth)
                for i in range(0, n, 500)]
        res = load("127.0.0.1", port, reqs, 1, keep_bodies=True)
        accepted = sum(1 for b in res.bodies for r in orjson.loads(b)["results"]
                       if r["status"] == "accepted")
        if accepted != n:
            raise RuntimeError(f"only {accepted} of {n} referrals accepted by the hub")
        assert hub.proc is not None
        procs.stop(hub.proc)
        for r in range(args.repeat):
            live = root / f"run{r}"
            _copy_world(world, live)
            h = Hub(live / "hub", env)
            h.port = port  # the node's config names this port
            h.proc = procs.start(f"hub{r}", [
                RSSN_HUB, "serve", "--data-dir", str(h.data_dir), "--port", str(port),
                "--no-access-log"], env)
            wait_http(f"{h.url}/readyz", proc=h.proc)
            if h.mailbox_depth(recipient.node_id) != n:
                raise RuntimeError("template mailbox is not full")
            node = Member(recipient.node_id, recipient.org, live / "recipient", env)
            hub_cpu0 = cpu_seconds(h.proc.pid)
            t0 = time.perf_counter()
            node.proc = procs.start(f"recipient{r}", node.serve_args(), env)
            t1 = wait_http(f"{node.url}/healthz", proc=node.proc)
            until(lambda h=h, node=node: h.mailbox_depth(node.node_id) == 0
                  and _inbound(node.db_path()) == n, timeout=600, interval=0.02,
                  what="catch-up")
            t2 = time.perf_counter()
            runs.append(t2 - t1)
            from_exec.append(t2 - t0)
            cpu.append({"node_ms_per_referral": round(cpu_seconds(node.proc.pid) / n * 1000, 3),
                        "hub_ms_per_referral": round((cpu_seconds(h.proc.pid) - hub_cpu0)
                                                     / n * 1000, 3)})
            procs.stop(node.proc)
            procs.stop(h.proc)
            shutil.rmtree(live, ignore_errors=True)
    key = "catchup_10k_s" if n == 10_000 else f"catchup_{n}_s"
    return {key: statistics.median(runs), "catchup_10k_from_exec_s"
            if n == 10_000 else f"catchup_{n}_from_exec_s": statistics.median(from_exec),
            "catchup_runs": runs, "catchup_cpu": cpu}


# -- end-to-end latency ---------------------------------------------------------------------


class _ArrivalPoller(threading.Thread):
    """Reads the recipient's database every 2 ms; notes when each referral id first appears."""

    def __init__(self, db: Path, interval: float = 0.002) -> None:
        super().__init__(daemon=True, name="arrivals")
        self.db = db
        self.interval = interval
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        c = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30,
                            check_same_thread=False)
        last = 0
        try:
            while not self.stop.is_set():
                rows = c.execute("SELECT rowid, id FROM referrals WHERE rowid > ? AND "
                                 "direction = 'inbound'", (last,)).fetchall()
                now = time.time()
                for rowid, rid in rows:
                    self.seen.setdefault(rid, now)
                    last = max(last, rowid)
                time.sleep(self.interval)
        finally:
            c.close()


def _pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    k = max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))
    return s[k]


@measure("e2e")
def _e2e(args: argparse.Namespace) -> dict[str, Any]:
    rate = 200.0
    seconds = 5 if args.quick else 15
    p50s: list[float] = []
    p99s: list[float] = []
    extra: dict[str, Any] = {}
    with workspace() as (root, procs):
        env = base_env()
        hub = Hub(root / "hub", env)
        hub.init()
        hub.serve(procs)
        sender = Member("bench-sender", "Bench Sender", root / "sender", env)
        recipient = Member("bench-recipient", "Bench Recipient", root / "recipient", env)
        for m in (sender, recipient):
            m.init(hub)
        sender.create_api_key()
        for m in (sender, recipient):
            m.serve(procs)
        from node.samples import sample_referral

        def requests(count: int) -> list[bytes]:
            hdr = {"Authorization": f"Bearer {sender.api_key}"}
            return [build_request("127.0.0.1", sender.port, "/api/v1/referrals", orjson.dumps(
                {"to": recipient.node_id,
                 "referral": sample_referral(i % 2 * 4, organization="Bench Sender")}), hdr)
                for i in range(count)]

        # Warm-up: directory, tokens, connections, SQLite caches on all three processes.
        warm = paced("127.0.0.1", sender.port, requests(200), rate / 2)
        if set(warm.statuses) != {202}:
            raise RuntimeError(f"warm-up answers {warm.statuses}: {warm.bodies[0][:300]!r}")
        until(lambda: _inbound(recipient.db_path()) >= 200, timeout=120, what="warm-up")
        time.sleep(1.0)
        for _ in range(args.repeat):
            poller = _ArrivalPoller(recipient.db_path())
            poller.start()
            reqs = requests(int(rate * seconds))
            pids = {"sender": sender.proc, "hub": hub.proc, "recipient": recipient.proc}
            cpu0 = {k: cpu_seconds(p.pid) for k, p in pids.items() if p is not None}
            res = paced("127.0.0.1", sender.port, reqs, rate)
            if set(res.statuses) != {202}:
                raise RuntimeError(f"sender answered {res.statuses}")
            ids = [json.loads(b)["id"] for b in res.bodies]
            until(lambda ids=ids, poller=poller: all(i in poller.seen for i in ids),
                  timeout=300, what="all referrals at the recipient")
            # Let the receipts flow back before reading CPU (they are part of each referral's cost).
            time.sleep(1.0)
            cpu_ms = {k: round((cpu_seconds(p.pid) - cpu0[k]) / len(reqs) * 1000, 2)
                      for k, p in pids.items() if p is not None}
            poller.stop.set()
            poller.join()
            lat = [(poller.seen[i] - t) * 1000 for i, t in zip(ids, res.answered_at, strict=True)]
            p50s.append(statistics.median(lat))
            p99s.append(_pct(lat, 99))
            extra.setdefault("e2e_runs", []).append({
                "p50_ms": round(p50s[-1], 1), "p99_ms": round(p99s[-1], 1),
                "max_ms": round(max(lat), 1),
                "api_call_ms_p50": round(statistics.median(res.latencies_ms), 1),
                "api_call_ms_p99": round(_pct(res.latencies_ms, 99), 1),
                "send_lag_ms_max": round(max(res.send_lag_ms), 1),
                "achieved_rate_per_s": round(len(reqs) / res.seconds, 1),
                "cpu_ms_per_referral": cpu_ms})
            lag = max(res.send_lag_ms)
            if lag > 50:
                record_note("e2e", f"the paced client fell {lag:.0f} ms behind schedule")
            time.sleep(1.0)
    return {"e2e_latency_ms_p50": statistics.median(p50s),
            "e2e_latency_ms_p99": statistics.median(p99s), "e2e_rate_per_s": rate, **extra}
