"""docs/THREAT_MODEL.md cites tests by node id; each one must exist.

Why parse the source rather than ask pytest to collect: this runs in a second, and a test
renamed or deleted shows up as a threat whose proof silently vanished.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "THREAT_MODEL.md"
CITED = re.compile(r"`(tests/[\w/]+\.py)::([\w:]+)(?:\[[^\]]*\])?`")


def _defined(path: Path) -> set[str]:
    """'test_x' and 'TestClass::test_y' for every test function in the file."""
    tree = ast.parse(path.read_text("utf-8"))
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out.add(node.name)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    out.add(f"{node.name}::{item.name}")
    return out


def cited_ids(text: str) -> list[tuple[str, str]]:
    return CITED.findall(text)


def test_every_cited_test_exists() -> None:
    ids = cited_ids(DOC.read_text("utf-8"))
    assert len(ids) >= 40, "the threat model cites too few tests; did the format change?"
    missing = []
    for file, name in ids:
        path = ROOT / file
        if not path.is_file() or name not in _defined(path):
            missing.append(f"{file}::{name}")
    assert missing == [], missing


def test_every_threat_has_control_tests_and_status() -> None:
    text = DOC.read_text("utf-8")
    sections = re.split(r"\n### ", text)[1:]
    assert len(sections) >= 15
    for s in sections:
        title = s.splitlines()[0]
        for row in ("| Asset |", "| Control |", "| Tests |", "| Status |"):
            assert row in s, f"{title}: no {row.strip('| ')} row"
        status = next(line for line in s.splitlines() if line.startswith("| Status |"))
        assert re.search(r"\*\*(covered|partial|not covered)\*\*", status), title
        tests = next(line for line in s.splitlines() if line.startswith("| Tests |"))
        assert cited_ids(tests), f"{title}: no test cited"


def test_the_checker_catches_a_missing_test(tmp_path: Path) -> None:
    ids = cited_ids("`tests/security/test_threat_model_doc.py::test_nope` and "
                    "`tests/security/test_threat_model_doc.py::test_every_cited_test_exists[x]`")
    defined = _defined(ROOT / "tests/security/test_threat_model_doc.py")
    assert [n in defined for _, n in ids] == [False, True]
