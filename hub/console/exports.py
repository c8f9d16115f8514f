"""CSV and XLSX exports of the monitoring views, with an HXL hashtag row.

Why HXL: coordinators paste these into the humanitarian tools they already use
(HDX, 3W sheets, HXL Proxy), which read the hashtag row under the header row.
Why small-count suppression: an aggregate cell of 1 or 2 referrals between two
organisations can single out a person in a small town; cells below `min_cell`
(but above zero) become "<k" in aggregate exports. Per-referral exports carry the
same content-free metadata the console shows, never anything else.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .monitor import PRIORITIES, STATUSES, NodeHealth, Referral

__all__ = ["Table", "suppress", "to_csv", "to_xlsx"]


@dataclass
class Table:
    name: str
    headers: list[str]
    hxl: list[str]
    rows: list[list[Any]]
    aggregate: bool = False


def suppress(n: int, k: int) -> int | str:
    return f"<{k}" if k > 0 and 0 < n < k else n


def _d(v: datetime | None) -> str:
    return "" if v is None else v.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def referrals_table(refs: Sequence[Referral], now: datetime) -> Table:
    return Table(
        "referrals",
        [
            "referral_id", "thread", "from_organisation", "from_node", "from_country",
            "to_organisation", "to_node", "to_country", "priority", "category", "status",
            "deadline_state", "sent_at", "due_at", "received_at", "accepted_at",
            "completed_at", "age_days",
        ],
        [
            "#x_referral+id", "#x_referral+thread", "#org+sender+name", "#org+sender+code",
            "#country+sender+code", "#org+receiver+name", "#org+receiver+code",
            "#country+receiver+code", "#severity", "#subsector+code", "#status",
            "#status+deadline", "#date+sent", "#date+due", "#date+received", "#date+accepted",
            "#date+completed", "#x_age+days",
        ],
        [
            [
                r.referral_id, r.thread, r.sender_org, r.sender, r.sender_country,
                r.recipient_org, r.recipient, r.recipient_country, r.priority, r.category or "",
                r.status, r.deadline_state, _d(r.sent_at), _d(r.due_at), _d(r.received_at),
                _d(r.accepted_at), _d(r.completed_at), round(r.age.total_seconds() / 86400, 1),
            ]
            for r in refs
        ],
    )


def status_table(overview: dict[str, Any], k: int) -> Table:
    by = dict(overview["by_status"])
    return Table(
        "status",
        ["status", "referrals"],
        ["#status", "#indicator+num+referrals"],
        [[s, suppress(by.get(s, 0), k)] for s in STATUSES],
        aggregate=True,
    )


def overdue_table(overview: dict[str, Any], k: int) -> Table:
    by = dict(overview["overdue"])
    return Table(
        "overdue",
        ["priority", "overdue_referrals"],
        ["#severity", "#indicator+num+overdue"],
        [[p, suppress(by.get(p, 0), k)] for p in PRIORITIES],
        aggregate=True,
    )


def flows_table(flows: dict[str, Any], k: int) -> Table:
    return Table(
        "flows",
        ["from_country", "to_country", "referrals"],
        ["#country+sender+code", "#country+receiver+code", "#indicator+num+referrals"],
        [[a, b, suppress(n, k)] for (a, b), n in flows["pairs"]],
        aggregate=True,
    )


def members_table(rows: Sequence[dict[str, Any]], k: int) -> Table:
    return Table(
        "members",
        ["organisation", "node", "country", "received", "answered", "overdue_unanswered",
         "median_response_hours"],
        ["#org+name", "#org+code", "#country+code", "#indicator+num+received",
         "#indicator+num+answered", "#indicator+num+overdue", "#indicator+median+hours"],
        [
            [
                m["organization"], m["node_id"], m["country"], suppress(m["received"], k),
                suppress(m["answered"], k), suppress(m["overdue"], k),
                "" if m["median_response_hours"] is None or m["received"] < k
                else round(m["median_response_hours"], 1),
            ]
            for m in rows
        ],
        aggregate=True,
    )


def nodes_table(health: Sequence[NodeHealth]) -> Table:
    return Table(
        "nodes",
        ["node", "organisation", "country", "status", "health", "last_seen", "mailbox_depth",
         "oldest_undelivered", "key_expiry", "software_version", "revoked_at"],
        ["#org+code", "#org+name", "#country+code", "#status", "#status+health",
         "#date+last_seen", "#indicator+num+mailbox", "#date+oldest_undelivered",
         "#date+key_expiry", "#meta+version", "#date+revoked"],
        [
            [h.node_id, h.organization, h.country, h.status, h.health, _d(h.last_seen),
             h.mailbox_depth, _d(h.oldest_undelivered), _d(h.key_expiry),
             h.software_version or "", _d(h.revoked_at)]
            for h in health
        ],
    )


def directory_table(rows: Sequence[dict[str, Any]]) -> Table:
    out = []
    for s in rows:
        locs = s["locations"] or [{}]
        for loc in locs:
            out.append(
                [
                    s["organization"], s["organization_id"], s["node_id"], s["name"],
                    s["service_id"], " ".join(s["service_types"]), " ".join(s["populations"]),
                    loc.get("country", s["countries"][0] if s["countries"] else ""),
                    loc.get("city", ""), loc.get("name", ""), loc.get("latitude"),
                    loc.get("longitude"), " ".join(s["languages"]), "; ".join(s["hours"]),
                    s["email"], " ".join(s["phones"]), s["criteria"],
                ]
            )
    return Table(
        "directory",
        ["organisation", "organisation_id", "node", "service", "service_id", "service_types",
         "populations", "country", "city", "location", "latitude", "longitude", "languages",
         "hours", "email", "phones", "referral_criteria"],
        ["#org+name", "#org+id", "#org+code", "#service+name", "#service+id",
         "#service+type+code", "#x_population+code", "#country+code", "#adm2+name", "#loc+name",
         "#geo+lat", "#geo+lon", "#x_languages+code", "#x_hours", "#contact+email",
         "#contact+phone", "#x_criteria"],
        out,
    )


def _cell(v: Any) -> Any:
    # Spreadsheet formula injection: text starting with = + - @ is read as a formula.
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return "" if v is None else v


def to_csv(table: Table) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(table.headers)
    w.writerow(table.hxl)
    for row in table.rows:
        w.writerow([_cell(v) for v in row])
    return buf.getvalue().encode("utf-8-sig")


def to_xlsx(table: Table) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook(write_only=False)
    ws = wb.active
    ws.title = table.name[:31]
    ws.append(table.headers)
    ws.append(table.hxl)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for cell in ws[2]:
        cell.font = Font(italic=True)
    for row in table.rows:
        ws.append([_cell(v) for v in row])
    ws.freeze_panes = "A3"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
