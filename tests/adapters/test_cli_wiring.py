"""The functions node/cli.py wires: import (convert then send) and one sync round."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx

from adapters.bench import generate_progres_csv
from adapters.cli import run_import, run_sync_primero

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_primero_roundtrip import CASE, PASSWORD, USER


def test_import_sends_only_converted_records(tmp_path: Path) -> None:
    src = tmp_path / "e.csv"
    faults = generate_progres_csv(src, 300, seed=5, fault_rate=0.2)
    sent: list[dict[str, Any]] = []

    def send(doc: dict[str, Any], refs: dict[str, str]) -> str:
        sent.append(refs)
        if refs["source_id"].endswith("7"):
            raise ConnectionError("node down")
        return "r-" + refs["source_id"]

    report = tmp_path / "r.csv"
    assert run_import("progres", src, send, None, report, "vital_interest", "Operator") == 1
    assert len(sent) == 300 - len(faults)
    text = report.read_text(encoding="utf-8")
    assert "send_failed" in text and all(sid in text for sid in faults)


def test_sync_once(fake_primero: str, tmp_path: Path) -> None:
    httpx.post(fake_primero + "/__seed", json={"data": CASE})
    sent: list[dict[str, Any]] = []

    def send(doc: dict[str, Any], refs: dict[str, str]) -> str:
        sent.append(doc)
        return "0190f5a0-0000-7000-8000-000000000001"

    code = run_sync_primero(tmp_path, fake_primero, send, lambda: [], username=USER,
                            password=PASSWORD, once=True)
    assert code == 0 and len(sent) == 1
    assert run_sync_primero(tmp_path, fake_primero, send, lambda: [], username=USER,
                            password="nope", once=True) == 2
