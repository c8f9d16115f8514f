"""The alert rules use the hub's real metric names and labels.

Why: a rule over a misspelt series is silently never true, which is worse than no rule.
The names are taken from the rule expressions and compared with the hub source here, and
with a live hub's /metrics output in test_image.py (hub served from the built wheel).
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.deploy.tools import DEPLOY, ROOT

RULES = DEPLOY / "prometheus" / "rssn-alerts.yml"
_SUFFIXES = ("_total", "_created", "_bucket", "_count", "_sum")


def base_name(name: str) -> str:
    """Counter/histogram sample names reduced to the family name prometheus_client declares."""
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def alert_metric_names() -> set[str]:
    text = RULES.read_text()
    return {base_name(m) for m in re.findall(r"\brssn_hub_[a-z0-9_]+", text)}


def exposed_families(metrics_text: str) -> set[str]:
    """Family names from `# TYPE` lines of a Prometheus text exposition."""
    return {
        line.split()[2]
        for line in metrics_text.splitlines()
        if line.startswith("# TYPE ")
    }


def _declared_in_hub_source() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "hub").rglob("*.py"):
        names |= {base_name(m) for m in re.findall(r"[\"'](rssn_hub_[a-z0-9_]+)[\"']",
                                                    path.read_text())}
    return names


def test_rules_reference_only_metrics_the_hub_declares() -> None:
    used = alert_metric_names()
    assert {"rssn_hub_node_last_seen_timestamp_seconds", "rssn_hub_mailbox_oldest_age_seconds",
            "rssn_hub_node_key_expiry_timestamp_seconds", "rssn_hub_messages_rejected"} <= used
    missing = used - _declared_in_hub_source()
    assert missing == set(), f"alert rules use metrics the hub does not declare: {missing}"


def test_per_node_gauges_are_labelled_node() -> None:
    """The rules aggregate `max by (node)`; the hub must label those gauges `node`."""
    source = (ROOT / "hub" / "metrics.py").read_text()
    for gauge in ("rssn_hub_node_last_seen_timestamp_seconds",
                  "rssn_hub_mailbox_oldest_age_seconds",
                  "rssn_hub_node_key_expiry_timestamp_seconds"):
        declaration = source[source.index(f'"{gauge}"'):][:400]
        assert 'labels=["node"]' in declaration, f"{gauge} is not labelled node"
    assert "by (node)" in RULES.read_text()


def test_exposition_parser_reads_type_lines(tmp_path: Path) -> None:
    sample = (
        "# HELP rssn_hub_messages_rejected_total Envelopes refused\n"
        "# TYPE rssn_hub_messages_rejected counter\n"
        'rssn_hub_messages_rejected_total{code="expired"} 1.0\n'
    )
    assert exposed_families(sample) == {"rssn_hub_messages_rejected"}
