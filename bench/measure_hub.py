"""Hub ingest: single-envelope and batch submissions, on SQLite and PostgreSQL.

How: one hub is initialised and two members enrolled (real `rssn-node init`), then the
hub's database is kept as a template. Every run starts a fresh copy of that database
(same hub key, same members, empty mailboxes), so repeated runs start from the same
state and can replay the same pre-sealed envelopes. Envelopes are real referrals
sealed with the sender's keys from its data directory. Requests are pre-built and
sent by bench.loadgen over keep-alive connections; every answer must be 202
(single) or an "accepted" result (batch), otherwise the run fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import uuid
from pathlib import Path
from typing import Any

import orjson

from bench.loadgen import build_request, load
from bench.net import (
    Hub,
    Member,
    Processes,
    base_env,
    cpu_seconds,
    pg_create,
    pg_drop,
    pg_reason,
    seal_referrals,
    workspace,
)
from bench.run import measure, record_note

#: Concurrent keep-alive connections for single submissions: a regional hub serves 110+
#: member nodes at once. The baseline is measured with the same number (bench.run).
CONNECTIONS = int(os.environ.get("RSSN_BENCH_CONNECTIONS", "32"))
#: Batch submissions in flight at once (a node's outbox sends one batch at a time).
BATCH_CONNECTIONS = 4
BATCH = 500


class HubTemplate:
    """A hub with two enrolled members, copied afresh for every run."""

    def __init__(self, root: Path, procs: Processes, *, pg: bool) -> None:
        self.root = root
        self.procs = procs
        self.pg_name = f"rssn_bench_{uuid.uuid4().hex[:10]}" if pg else None
        env = base_env()
        if self.pg_name:
            env["RSSN_HUB_DB"] = pg_create(self.pg_name)
        self.template = Hub(root / "hub-template", env)
        self.template.init()
        self.template.serve(procs, name="hub-template")
        menv = base_env()
        self.sender = Member("bench-sender", "Bench Sender", root / "sender", menv)
        self.recipient = Member("bench-recipient", "Bench Recipient", root / "recipient", menv)
        self.sender.init(self.template)
        self.recipient.init(self.template)
        assert self.template.proc is not None
        procs.stop(self.template.proc)
        self.copies: list[str] = []

    def fresh(self, n: int, *, workers: int = 1) -> Hub:
        env = dict(self.template.env)
        d = self.root / f"hub-{n}"
        if self.pg_name:
            name = f"{self.pg_name}_{n}"
            env["RSSN_HUB_DB"] = pg_create(name, template=self.pg_name)
            self.copies.append(name)
            d.mkdir()
        else:
            shutil.copytree(self.template.data_dir, d)
        hub = Hub(d, env)
        hub.serve(self.procs, workers=workers, name=f"hub-{n}")
        return hub

    def close(self) -> None:
        for name in self.copies:
            pg_drop(name)
        if self.pg_name:
            pg_drop(self.pg_name)


def _token_for(hub: Hub, member: Member) -> str:
    from node.hub_client import HubClient

    _config, keys = member.identity()
    c = HubClient(hub.url, node_id=member.node_id, signing=keys.signing,
                  token_endpoint=f"{hub.url}/v1/oauth/token")
    try:
        return c._access_token()
    finally:
        c.close()


def _single_run(hub: Hub, sender: Member, envelopes: list[bytes]) -> tuple[float, float]:
    """(envelopes/s, hub CPU ms per envelope)."""
    auth = {"Authorization": f"Bearer {_token_for(hub, sender)}",
            "User-Agent": "rssn-node/bench"}
    reqs = [build_request("127.0.0.1", hub.port, "/v1/messages", raw, auth) for raw in envelopes]
    assert hub.proc is not None
    cpu0 = cpu_seconds(hub.proc.pid)
    res = load("127.0.0.1", hub.port, reqs, CONNECTIONS)
    cpu = (cpu_seconds(hub.proc.pid) - cpu0) / len(envelopes) * 1000
    if res.statuses != {202: len(envelopes)}:
        raise RuntimeError(f"unexpected answers {res.statuses}")
    return res.per_s, round(cpu, 3)


def _batch_run(hub: Hub, sender: Member, envelopes: list[bytes], connections: int
               ) -> tuple[float, float]:
    """(envelopes/s, hub CPU ms per envelope, all its processes)."""
    auth = {"Authorization": f"Bearer {_token_for(hub, sender)}",
            "User-Agent": "rssn-node/bench"}
    reqs = []
    for i in range(0, len(envelopes), BATCH):
        body = b'{"envelopes":[' + b",".join(envelopes[i:i + BATCH]) + b"]}"
        reqs.append(build_request("127.0.0.1", hub.port, "/v1/messages/batch", body, auth))
    assert hub.proc is not None
    cpu0 = cpu_seconds(hub.proc.pid)
    res = load("127.0.0.1", hub.port, reqs, connections, keep_bodies=True)
    cpu = (cpu_seconds(hub.proc.pid) - cpu0) / len(envelopes) * 1000
    if res.statuses != {200: len(reqs)}:
        raise RuntimeError(f"unexpected answers {res.statuses}")
    accepted = sum(1 for b in res.bodies for r in orjson.loads(b)["results"]
                   if r["status"] == "accepted")
    if accepted != len(envelopes):
        raise RuntimeError(f"only {accepted} of {len(envelopes)} accepted")
    return len(envelopes) / res.seconds, round(cpu, 3)


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else 0.0


def _sizes(args: argparse.Namespace) -> tuple[int, int]:
    """(single-envelope count, batch-envelope count) per run."""
    if args.quick:
        return 1500, 5000
    return 4000, 20000


@measure("hub")
def _hub(args: argparse.Namespace) -> dict[str, float]:
    n_single, n_batch = _sizes(args)
    out: dict[str, float] = {}
    with workspace() as (root, procs):
        t = HubTemplate(root, procs, pg=False)
        envs = seal_referrals(t.sender, t.recipient, max(n_single, n_batch))
        out["hub_envelope_bytes"] = float(_median([len(e) for e in envs]))
        runs: dict[str, list[tuple[float, float]]] = {"single": [], "batch": [], "batch2": []}
        for r in range(args.repeat):
            for k, (workers, fn) in enumerate((
                    (1, lambda h: _single_run(h, t.sender, envs[:n_single])),
                    (1, lambda h: _batch_run(h, t.sender, envs[:n_batch], BATCH_CONNECTIONS)),
                    (2, lambda h: _batch_run(h, t.sender, envs[:n_batch], BATCH_CONNECTIONS)))):
                hub = t.fresh(3 * r + k, workers=workers)
                runs[("single", "batch", "batch2")[k]].append(fn(hub))
                assert hub.proc is not None
                procs.stop(hub.proc)
        out["hub_ingest_per_s"] = _median([x for x, _ in runs["single"]])
        out["hub_batch_ingest_per_s"] = _median([x for x, _ in runs["batch"]])
        out["hub_batch_ingest_2workers_per_s"] = _median([x for x, _ in runs["batch2"]])
        out["hub_ingest_cpu_ms_per_envelope"] = _median([c for _, c in runs["single"]])
        out["hub_batch_cpu_ms_per_envelope"] = _median([c for _, c in runs["batch"]])
        out["hub_ingest_runs"] = runs  # type: ignore[assignment]
    return out


@measure("hub_pg")
def _hub_pg(args: argparse.Namespace) -> dict[str, Any]:
    reason = pg_reason()
    if reason:
        record_note("hub_pg", f"PostgreSQL unreachable, not measured: {reason}")
        return {}
    n_single, n_batch = _sizes(args)
    out: dict[str, Any] = {}
    with workspace() as (root, procs):
        t = HubTemplate(root, procs, pg=True)
        try:
            envs = seal_referrals(t.sender, t.recipient, max(n_single, n_batch))
            runs: dict[str, list[tuple[float, float]]] = {"single": [], "batch2": []}
            for r in range(args.repeat):
                hub = t.fresh(2 * r)
                runs["single"].append(_single_run(hub, t.sender, envs[:n_single]))
                assert hub.proc is not None
                procs.stop(hub.proc)
                hub = t.fresh(2 * r + 1, workers=2)
                runs["batch2"].append(_batch_run(hub, t.sender, envs[:n_batch],
                                                 BATCH_CONNECTIONS))
                assert hub.proc is not None
                procs.stop(hub.proc)
            out["hub_ingest_pg_per_s"] = _median([x for x, _ in runs["single"]])
            out["hub_batch_ingest_pg_2workers_per_s"] = _median([x for x, _ in runs["batch2"]])
            out["hub_ingest_pg_runs"] = runs
        finally:
            procs.stop_all()
            t.close()
    return out
