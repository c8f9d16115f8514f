"""The reliability figures (issue 7): counted by the tests that ran, printed as one line.

Why a session-wide collector: the promise is a set of numbers (faults injected, messages
lost, duplicated, hostile inputs, inputs accepted wrongly, canary hits), and each number
must come from tests that actually ran in this pytest session, never from constants. Fault,
hostile and security tests record into ``TALLY`` (through the ``tally`` fixture of their
conftest); at the end of the session the plugin writes
``test-artifacts/reliability/summary.json`` and prints, as the very last line::

    reliability: F faults injected, L lost, D duplicated, H hostile inputs, A accepted wrongly, C canary hits

A hostile input is counted once per distinct (target, bytes) pair, so re-running the same
mutation against the same target does not inflate H.

``python -m tests.reliability_summary [path]`` prints the line again from a summary file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

__all__ = ["TALLY", "Recorder", "Tally", "full_run", "register", "summary_line", "tally"]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("RSSN_RELIABILITY_DIR", ROOT / "test-artifacts" / "reliability"))
PLUGIN_NAME = "rssn-reliability"


def full_run() -> bool:
    """``RSSN_RELIABILITY_FULL=1`` (make reliability, CI): the long versions of the tests."""
    return os.environ.get("RSSN_RELIABILITY_FULL", "") not in ("", "0")


@dataclass
class Tally:
    faults: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    duplicated: int = 0
    accepted_wrongly: int = 0
    canary_hits: int = 0
    hostile_seen: set[bytes] = field(default_factory=set)
    flagged: set[bytes] = field(default_factory=set)
    hostile_by_target: Counter[str] = field(default_factory=Counter)
    wrongly_accepted: list[dict[str, Any]] = field(default_factory=list)
    canary_found: list[dict[str, Any]] = field(default_factory=list)
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = field(default_factory=time.time)

    @property
    def fault_total(self) -> int:
        return sum(self.faults.values())

    @property
    def hostile_total(self) -> int:
        return len(self.hostile_seen)

    def touched(self) -> bool:
        return bool(self.tests)

    def test(self, nodeid: str) -> dict[str, Any]:
        with self.lock:
            return self.tests.setdefault(nodeid, {"faults": {}, "exchanges": [], "hostile": 0,
                                                  "accepted_wrongly": 0, "canary_hits": 0,
                                                  "scanned": []})

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": summary_line(self),
            "faults_injected": self.fault_total,
            "faults_by_kind": dict(sorted(self.faults.items())),
            "lost": self.lost,
            "duplicated": self.duplicated,
            "hostile_inputs": self.hostile_total,
            "hostile_by_target": dict(sorted(self.hostile_by_target.items())),
            "accepted_wrongly": self.accepted_wrongly,
            "accepted_wrongly_examples": self.wrongly_accepted[:50],
            "canary_hits": self.canary_hits,
            "canary_hit_locations": self.canary_found[:200],
            "full_run": full_run(),
            "duration_seconds": round(time.time() - self.started, 1),
            "tests": self.tests,
        }


TALLY = Tally()


def summary_line(t: Tally) -> str:
    return (
        f"reliability: {t.fault_total} faults injected, {t.lost} lost, {t.duplicated} duplicated, "
        f"{t.hostile_total} hostile inputs, {t.accepted_wrongly} accepted wrongly, "
        f"{t.canary_hits} canary hits"
    )


class Recorder:
    """What one test records; every method is thread-safe and returns what it counted."""

    def __init__(self, tally: Tally, nodeid: str) -> None:
        self.t = tally
        self.nodeid = nodeid
        self.rec = tally.test(nodeid)

    def fault(self, kind: str, n: int = 1) -> None:
        """``n`` faults of ``kind`` were injected (a SIGKILL, a database outage, a cut link...)."""
        with self.t.lock:
            self.t.faults[kind] += n
            self.rec["faults"][kind] = self.rec["faults"].get(kind, 0) + n

    def exchange(self, name: str, *, sent: set[str], processed: dict[str, int],
                 failed_reported: set[str], delivered: set[str] | None = None,
                 **extra: Any) -> tuple[int, int]:
        """Compare what was sent with what was processed; returns (lost, duplicated).

        ``processed`` maps each message id to how many times the recipient processed it.
        A message is lost when it was sent and neither processed nor reported failed to its
        sender; duplicated counts every processing beyond the first. Ids processed that were
        never sent also count as lost accounting (they show up in ``unexpected``).
        """
        lost = sent - set(k for k, v in processed.items() if v > 0) - failed_reported
        dup = sum(v - 1 for v in processed.values() if v > 1)
        unexpected = set(processed) - sent
        row = {
            "name": name,
            "sent": len(sent),
            "delivered": len(delivered) if delivered is not None else None,
            "processed": sum(1 for v in processed.values() if v > 0),
            "failed_reported": len(failed_reported),
            "lost": len(lost),
            "duplicated": dup,
            "unexpected": len(unexpected),
            "lost_examples": sorted(lost)[:10],
            **extra,
        }
        with self.t.lock:
            self.t.lost += len(lost) + len(unexpected)
            self.t.duplicated += dup
            self.rec["exchanges"].append(row)
        return len(lost) + len(unexpected), dup

    def hostile(self, target: str, data: bytes | str, *, accepted_wrongly: bool = False,
                detail: str = "") -> bool:
        """One hostile input sent to ``target``; returns False if it was already counted."""
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        key = hashlib.sha256(target.encode() + b"\x00" + raw).digest()[:16]
        # (``target`` is the kind of input: the same bytes sent twice count once.)
        with self.t.lock:
            new = key not in self.t.hostile_seen
            if new:
                self.t.hostile_seen.add(key)
                self.t.hostile_by_target[target] += 1
                self.rec["hostile"] += 1
            if accepted_wrongly and key not in self.t.flagged:
                self.t.flagged.add(key)
                self.t.accepted_wrongly += 1
                self.rec["accepted_wrongly"] += 1
                self.t.wrongly_accepted.append(
                    {"test": self.nodeid, "target": target, "detail": detail[:300],
                     "input_sha256": hashlib.sha256(raw).hexdigest()})
        return new

    def canary(self, location: str, hits: int, *, allowed: bool = False,
               detail: str = "") -> None:
        """A scan of ``location`` found ``hits`` canaries (counted unless ``allowed``)."""
        with self.t.lock:
            self.rec["scanned"].append({"location": location, "hits": hits, "allowed": allowed})
            if hits and not allowed:
                self.t.canary_hits += hits
                self.rec["canary_hits"] += hits
                self.t.canary_found.append({"test": self.nodeid, "location": location,
                                            "hits": hits, "detail": detail[:300]})

    def note(self, **values: Any) -> None:
        with self.t.lock:
            self.rec.update(values)


# --- pytest plugin ---------------------------------------------------------------------------


class _Plugin:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not TALLY.touched():
            return
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        doc = TALLY.to_json()
        doc["exit_status"] = int(session.exitstatus)
        (ARTIFACTS / "summary.json").write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        # Last of all, after pytest's own "N passed" line: the figures are what must be read.
        if not TALLY.touched():
            return
        line = summary_line(TALLY)
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"reliability details: {ARTIFACTS / 'summary.json'}")
            reporter.write_line(line)
        else:
            sys.stdout.write(line + "\n")


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Recorder:
    """Record this test's reliability figures (conftests import this fixture)."""
    return Recorder(TALLY, request.node.nodeid)


def register(config: pytest.Config) -> None:
    """Called by each reliability conftest's pytest_configure; registers the plugin once."""
    if not config.pluginmanager.has_plugin(PLUGIN_NAME):
        config.pluginmanager.register(_Plugin(config), PLUGIN_NAME)


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else ARTIFACTS / "summary.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        print(f"reliability: no summary at {path} (did the tests run?)")
        return 1
    print(doc["summary"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
