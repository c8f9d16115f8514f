"""`make demo` runs the whole network on loopback and exits 0 with every process stopped."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.processes import base_env


@pytest.mark.slow
def test_demo_runs_and_cleans_up():
    out = subprocess.run([sys.executable, "-m", "node.demo"], capture_output=True, text=True,
                         timeout=600, env=base_env(), check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "All 5 referrals reached their final state" in text
    for needle in ("completed at casa-refugio-mx", "declined at asistencia-legal-gt",
                   "restricted: consent withdrawn", "consent_withdrawal_acknowledged",
                   "The hub's view", "GET /console/api/referrals"):
        assert needle in text, needle
    hub_part = text.split("The hub's view", 1)[1]
    # the console's list, read over HTTP as the regional coordinator: one row per referral
    rows = {line.split()[0]: line.split() for line in hub_part.splitlines()
            if line.startswith("  R")}
    assert sorted(rows) == ["R1", "R2", "R3", "R4", "R5"]
    assert rows["R1"][1:3] == ["casa-refugio-mx", "asistencia-legal-gt"]
    assert [rows[r][5] for r in sorted(rows)] == [
        "completed", "completed", "declined", "accepted", "completed"]
    assert "fictional" not in hub_part and "Appointment" not in hub_part  # metadata only
    root = next(line.split("data in ")[1].rstrip(")") for line in text.splitlines()
                if "data in " in line)
    left = subprocess.run(["pgrep", "-f", root], capture_output=True, text=True, check=False)
    assert left.stdout.strip() == ""
