"""`make bench`: real processes on loopback, medians over repeated runs, same-run baselines.

Prints a table and writes bench/results/latest.json (issue 8). Each figure is a median of
`--repeat` runs; the baselines are measured in the same run so ratios compare like with like
on whatever machine this is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PY = sys.executable

#: figure -> (target description, predicate) for the closing table.
TARGETS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "hub_ingest_ratio": (">= 0.5", lambda v: v >= 0.5),
    "hub_batch_ingest_per_s": (">= 8000", lambda v: v >= 8000),
    "e2e_latency_ms_p99": ("<= 250", lambda v: v <= 250),
    "catchup_10k_s": ("<= 10", lambda v: v <= 10),
    "node_idle_rss_mb": ("<= 120", lambda v: v <= 120),
    "node_start_s": ("<= 2", lambda v: v <= 2),
    "adapter_progres_records_per_s": (">= 5000", lambda v: v >= 5000),
}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": os.getloadavg(),
    }


def median_of(fn: Callable[[], float], repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


# -- baselines ---------------------------------------------------------------------------------


def crypto_round_per_s(seconds: float = 1.0) -> float:
    """Raw PyNaCl: sign + encrypt + decrypt + verify of a 4 KiB document, one core."""
    import nacl.bindings as b
    import nacl.signing

    doc = os.urandom(4096)
    sk = nacl.signing.SigningKey.generate()
    vk = sk.verify_key
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sig = sk.sign(doc).signature
        key, nonce = os.urandom(32), os.urandom(24)
        ct = b.crypto_aead_xchacha20poly1305_ietf_encrypt(doc + sig, b"aad", nonce, key)
        pt = b.crypto_aead_xchacha20poly1305_ietf_decrypt(ct, b"aad", nonce, key)
        vk.verify(pt[:-64], pt[-64:])
        n += 1
    return n / (time.perf_counter() - t0)


def wait_http(port: int, path: str = "/", timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} did not answer")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def baseline_ingest_per_s(n: int = 6000, connections: int = 32) -> float:
    """A minimal ASGI endpoint: verify one Ed25519 signature, insert the body into SQLite."""
    import nacl.signing

    from bench.loadgen import build_request, load

    sk = nacl.signing.SigningKey.generate()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [PY, "-m", "bench.baseline_app", f"{tmp}/b.sqlite", str(port),
             bytes(sk.verify_key).hex()],
            cwd=ROOT,
        )
        try:
            wait_http(port)
            bodies = [sk.sign(os.urandom(1400)) for _ in range(n)]
            reqs = [build_request("127.0.0.1", port, "/ingest", bytes(b.signature) + b.message)
                    for b in bodies]
            res = load("127.0.0.1", port, reqs, connections)
            assert res.statuses.get(202) == n, res.statuses
            return res.per_s
        finally:
            proc.terminate()
            proc.wait(10)


# -- registry ----------------------------------------------------------------------------------

Measure = Callable[[argparse.Namespace], dict[str, Any]]
MEASURES: list[tuple[str, Measure]] = []
NOTES: dict[str, str] = {}


def record_note(group: str, text: str) -> None:
    """A remark that belongs in the results (a figure not measured and why, a disturbance)."""
    NOTES[group] = f"{NOTES[group]}; {text}" if group in NOTES else text


def measure(name: str) -> Callable[[Measure], Measure]:
    def deco(fn: Measure) -> Measure:
        MEASURES.append((name, fn))
        return fn

    return deco


@measure("baselines")
def _baselines(args: argparse.Namespace) -> dict[str, float]:
    return {
        "baseline_crypto_round_per_s": median_of(crypto_round_per_s, args.repeat),
        "baseline_ingest_per_s": median_of(baseline_ingest_per_s, args.repeat),
    }


def _load_plugins() -> None:
    """Measurements of the hub, node and adapters live beside this file (bench/measure_*.py)."""
    import importlib

    for path in sorted(Path(__file__).parent.glob("measure_*.py")):
        importlib.import_module(f"bench.{path.stem}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure (median reported)")
    ap.add_argument("--only", default="", help="comma-separated measurement groups")
    ap.add_argument("--quick", action="store_true",
                    help="smaller runs, one repetition (a smoke test of the harness)")
    ap.add_argument("--out", default=str(RESULTS / "latest.json"))
    ap.add_argument("--update", action="store_true",
                    help="re-run the --only groups and replace their figures in --out, keeping "
                         "the others (for groups disturbed by other load on a shared machine; "
                         "the hub group always re-runs the baselines its ratio needs)")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeat = 1
    _load_plugins()
    console = Console()
    only = {s for s in args.only.split(",") if s}
    previous: dict[str, Any] = {}
    if args.update and Path(args.out).exists():
        previous = json.loads(Path(args.out).read_text())
        if "hub" in only:
            only.add("baselines")
    results: dict[str, Any] = {"machine": machine(), "repeat": args.repeat,
                               "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if previous:
        results = {**previous, **{k: v for k, v in results.items() if k != "started_at"}}
        results.pop("hub_ingest_ratio", None)
        results.setdefault("reruns", []).append(
            {"groups": sorted(only), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    notes: dict[str, str] = NOTES
    for k, v in (previous.get("notes") or {}).items():
        if k not in only:
            notes.setdefault(k, v)
    load: dict[str, list[float]] = dict(previous.get("loadavg_1m_and_seconds_by_group") or {})
    for name, fn in MEASURES:
        if only and name not in only:
            continue
        console.print(f"[bold]measuring {name}[/bold] (load average {os.getloadavg()[0]:.2f}) ...")
        t0 = time.perf_counter()
        try:
            results.update(fn(args))
        except Exception as exc:  # a failed measurement is reported, not hidden
            record_note(name, f"{type(exc).__name__}: {exc}")
            console.print(f"[red]{name} failed: {exc}[/red]")
        # The machine is shared: the 1-minute load average after each group says whether
        # something else was running (2 cores: above ~2.5 means figures are disturbed).
        load[name] = [round(os.getloadavg()[0], 2), round(time.perf_counter() - t0, 1)]
        console.print(f"  done in {time.perf_counter() - t0:.1f} s")
    if "hub_ingest_per_s" in results and results.get("baseline_ingest_per_s"):
        results["hub_ingest_ratio"] = results["hub_ingest_per_s"] / results["baseline_ingest_per_s"]
    results["loadavg_1m_and_seconds_by_group"] = load
    results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results["notes"] = notes
    table = Table(title="rssn bench (medians)")
    for col in ("figure", "value", "target", "met"):
        table.add_column(col)
    for k, v in results.items():
        if isinstance(v, int | float) and not isinstance(v, bool) and k != "repeat":
            target, ok = TARGETS.get(k, ("", None))  # type: ignore[arg-type]
            met = "" if ok is None else ("yes" if ok(v) else "NO")
            table.add_row(k, f"{v:,.2f}", target, met)
    console.print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    # `python -m bench.run` runs this file as __main__; the plugins register with the module
    # `bench.run`, so hand over to that one (else their measurements would be invisible).
    from bench import run as _registry

    raise SystemExit(_registry.main())
