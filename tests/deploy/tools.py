"""Finding the external linters that check deploy/, and skipping clearly when one is absent.

Why skip instead of fail: this machine (and a developer's laptop) has no container engine
or Kubernetes, and the linters are optional system packages. Each test names the tool it
needs and how to get it (deploy/tools/install-lint-tools.sh), so a skip is never silent.
Python tools live in their own virtual environment ($RSSN_DEPLOY_TOOLS, default
/opt/rssn-deploy-tools) so they never change the project's .venv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCS = ROOT / "docs"
TOOLS_VENV = Path(os.environ.get("RSSN_DEPLOY_TOOLS", "/opt/rssn-deploy-tools"))
INSTALL_HINT = "run `sudo sh deploy/tools/install-lint-tools.sh`"

__all__ = [
    "DEPLOY",
    "DOCS",
    "INSTALL_HINT",
    "ROOT",
    "TOOLS_VENV",
    "explain",
    "find_tool",
    "need_tool",
    "run",
    "tools_python",
]


def find_tool(name: str) -> str | None:
    """A tool on PATH or in the deploy tools venv."""
    found = shutil.which(name)
    if found:
        return found
    candidate = TOOLS_VENV / "bin" / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return None


def need_tool(name: str, package: str) -> str:
    """Path of `name`, or skip the test saying which package provides it."""
    path = find_tool(name)
    if path is None:
        pytest.skip(f"{name} not installed ({package}); {INSTALL_HINT}")
    return path


def tools_python(module: str, package: str) -> str:
    """The tools venv's python if it can import `module`, else skip."""
    python = TOOLS_VENV / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no deploy tools venv at {TOOLS_VENV} ({package}); {INSTALL_HINT}")
    probe = subprocess.run(
        [str(python), "-c", f"import {module}"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"{package} not installed in {TOOLS_VENV}; {INSTALL_HINT}")
    return str(python)


def run(
    cmd: Sequence[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output (never raises on a non-zero exit)."""
    return subprocess.run(
        list(cmd),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        input=input_text,
    )


def explain(result: subprocess.CompletedProcess[str]) -> str:
    """Output of a failed command, for assertion messages."""
    return (
        f"command: {' '.join(map(str, result.args))}\nexit: {result.returncode}\n"
        f"stdout:\n{result.stdout[-6000:]}\nstderr:\n{result.stderr[-6000:]}"
    )
