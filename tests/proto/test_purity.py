"""protocol/ is a pure library: no I/O imports, and mypy --strict is clean (issue 2)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"httpx", "fastapi", "starlette", "sqlmodel", "sqlalchemy", "structlog", "sqlite3",
             "uvicorn", "requests", "aiohttp", "psycopg", "asyncpg", "logging", "socket"}


def test_no_io_imports() -> None:
    offenders = []
    for path in (ROOT / "protocol").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_mypy_strict_protocol() -> None:
    if shutil.which("mypy", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("mypy not installed in this environment")
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "protocol"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:]
