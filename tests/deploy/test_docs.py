"""The deployment guides stay true to the code: every command they tell an operator to type
exists, every file under deploy/ they point at exists, every in-page link has its heading,
and each guide says plainly what was and was not exercised.

Commands the guides document as planned (issue 9, phase two) are reported as skips until
they exist, so their absence is visible in every test run.
"""

from __future__ import annotations

import re
from functools import cache

import pytest

from tests.deploy.tools import DOCS, ROOT

GUIDES = [DOCS / "DEPLOY_NODE.md", DOCS / "OPERATE_HUB.md", ROOT / "deploy" / "README.md"]
# Documented with a "Status: planned" note; the later phase of issue 9 adds them.
PLANNED = {("rssn-node", "rotate-keys")}
# Shell helpers the guides define: `rn` runs rssn-node, `hub` runs rssn-hub.
HELPERS = {"rn": "rssn-node", "hub": "rssn-hub"}


@cache
def _cli_tree(program: str) -> dict[str, set[str]]:
    """{command: {subcommands}} of the real typer app (empty set for a plain command)."""
    typer = pytest.importorskip("typer")
    module = pytest.importorskip({"rssn-hub": "hub.cli", "rssn-node": "node.cli"}[program])
    group = typer.main.get_command(module.app)
    tree: dict[str, set[str]] = {}
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        tree[name] = set(getattr(command, "commands", {}) or {})
    return tree


def _documented_commands() -> set[tuple[str, str, str | None]]:
    """(program, command, subcommand-or-None) for every invocation in the guides.

    Looked for in inline code that starts with the program (`rssn-hub invite ...`) and in
    ```sh blocks at a command position (line start, after `exec`, `&&` or `;`); example
    *output* blocks (plain ```) are not commands.
    """
    found: set[tuple[str, str, str | None]] = set()
    word = r"([a-z][a-z0-9-]*)"
    for guide in GUIDES:
        text = guide.read_text()
        for m in re.finditer(rf"`(rssn-hub|rssn-node)[ \t]+{word}(?:[ \t]+{word})?", text):
            found.add((m.group(1), m.group(2), m.group(3)))
        for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
            pattern = rf"(?:^|exec |&& |; )[ \t]*(rssn-hub|rssn-node|rn|hub)[ \t]+{word}(?:[ \t]+{word})?"
            for m in re.finditer(pattern, block, re.MULTILINE):
                program = HELPERS.get(m.group(1), m.group(1))
                if m.group(2) == "rssn-entrypoint":
                    # `docker exec rssn-node rssn-entrypoint status`: the entry point runs
                    # the role's CLI with the next word as its command.
                    found.add((program, m.group(3), None))
                else:
                    found.add((program, m.group(2), m.group(3)))
    return found


def _check(program: str, command: str, sub: str | None) -> str | None:
    tree = _cli_tree(program)
    if command not in tree:
        return f"{program} has no command {command!r}"
    if tree[command] and sub not in tree[command]:
        return f"{program} {command} has no subcommand {sub!r}"
    return None


def test_guides_exist_and_say_what_was_run() -> None:
    for guide in GUIDES:
        assert guide.exists(), guide
        text = guide.read_text()
        assert "was and was not" in text or "What was run" in text, (
            f"{guide.name} must say plainly what was and was not exercised"
        )


def test_documented_commands_exist() -> None:
    problems = []
    for program, command, sub in sorted(_documented_commands(), key=str):
        if (program, command) in PLANNED:
            continue
        problem = _check(program, command, sub)
        if problem:
            problems.append(problem)
    assert problems == [], problems


@pytest.mark.parametrize(("program", "command"), sorted(PLANNED))
def test_planned_commands(program: str, command: str) -> None:
    if command not in _cli_tree(program):
        pytest.skip(f"`{program} {command}` is documented as planned (issue 9 phase two) "
                    "and does not exist yet")
    pytest.fail(f"`{program} {command}` exists: drop it from PLANNED and its status note")


def test_no_status_note_names_an_existing_command() -> None:
    """A "Status: planned" note about a command that exists misleads the reader."""
    stale = []
    for guide in GUIDES:
        for note in re.findall(r"^> \*\*Status:\*\*.*(?:\n>.*)*", guide.read_text(), re.M):
            for program, command in re.findall(r"`(rssn-node|rssn-hub) ([a-z-]+)`", note):
                if (program, command) not in PLANNED and command in _cli_tree(program):
                    stale.append(f"{guide.name}: {program} {command}")
    assert stale == [], stale


def test_referenced_deploy_files_exist() -> None:
    missing = []
    for guide in GUIDES:
        for ref in re.findall(r"(?<![\w/.-])deploy/[A-Za-z0-9_./@*-]+", guide.read_text()):
            ref = ref.rstrip(".,)")
            first = ref.split("/")[1]
            # Skip globs, the generated secrets directory, and `kubectl ... deploy/NAME`.
            if "*" in ref or first == "secrets" or not (ROOT / "deploy" / first).exists():
                continue
            if not (ROOT / ref).exists():
                missing.append(f"{guide.name}: {ref}")
    assert missing == [], missing


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_in_page_links_resolve() -> None:
    for guide in GUIDES:
        text = guide.read_text()
        anchors = {_slug(h) for h in re.findall(r"^#+\s+(.+)$", text, re.MULTILINE)}
        for link in re.findall(r"\]\(#([^)]+)\)", text):
            assert link in anchors, f"{guide.name}: no heading for #{link}"


def test_alert_names_in_the_guide_match_the_rules() -> None:
    yaml = pytest.importorskip("yaml")
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rssn-alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    text = (DOCS / "OPERATE_HUB.md").read_text()
    documented = set(re.findall(r"`(Rssn[A-Za-z]+)`", text))
    assert documented == alerts, (alerts - documented, documented - alerts)
