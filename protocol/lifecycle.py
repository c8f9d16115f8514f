"""The referral lifecycle as an explicit state machine (in the manner of h11's _state.py).

States follow FHIR R4 Task.status (https://hl7.org/fhir/R4/valueset-task-status.html):
requested, received, accepted, rejected (here: declined), in-progress, completed,
cancelled, failed. Every transition names the roles that may cause it; anything
not in the table is an InvalidTransition. There is no I/O and no clock here:
the node decides *when*, this module decides *whether*.

    requested --(recipient: receipt)--> received --(recipient)--> accepted | declined
    accepted --(recipient)--> in_progress --(recipient)--> completed
    requested | received | accepted | in_progress --(sender)--> cancelled
    requested --(system: delivery failure or expiry)--> failed

A recipient may answer before its receipt has been applied at the sender
(messages in one mailbox are ordered, but a node may restore from backup), so
requested -> accepted | declined is also allowed for the recipient: FHIR
permits the same short-cut.
"""

from __future__ import annotations

from enum import StrEnum

from .errors import InvalidTransition

__all__ = [
    "TERMINAL",
    "TRANSITIONS",
    "Role",
    "Status",
    "allowed_targets",
    "is_terminal",
    "next_state",
]


class Role(StrEnum):
    SENDER = "sender"
    RECIPIENT = "recipient"
    #: The sender's own node acting on transport facts (delivery failure, expiry).
    SYSTEM = "system"


class Status(StrEnum):
    REQUESTED = "requested"
    RECEIVED = "received"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


S, R = Role.SENDER, Role.RECIPIENT

#: (from, to) -> roles allowed to make that move. The whole lifecycle is this table.
TRANSITIONS: dict[tuple[Status, Status], frozenset[Role]] = {
    (Status.REQUESTED, Status.RECEIVED): frozenset({R}),
    (Status.REQUESTED, Status.ACCEPTED): frozenset({R}),
    (Status.REQUESTED, Status.DECLINED): frozenset({R}),
    (Status.REQUESTED, Status.CANCELLED): frozenset({S}),
    (Status.REQUESTED, Status.FAILED): frozenset({Role.SYSTEM}),
    (Status.RECEIVED, Status.ACCEPTED): frozenset({R}),
    (Status.RECEIVED, Status.DECLINED): frozenset({R}),
    (Status.RECEIVED, Status.CANCELLED): frozenset({S}),
    (Status.ACCEPTED, Status.IN_PROGRESS): frozenset({R}),
    (Status.ACCEPTED, Status.CANCELLED): frozenset({S}),
    (Status.IN_PROGRESS, Status.COMPLETED): frozenset({R}),
    (Status.IN_PROGRESS, Status.CANCELLED): frozenset({S}),
}

TERMINAL: frozenset[Status] = frozenset(
    {Status.DECLINED, Status.COMPLETED, Status.CANCELLED, Status.FAILED}
)


def _coerce(value: Status | str, what: str) -> Status:
    try:
        return Status(value)
    except ValueError:
        raise InvalidTransition(f"unknown {what} status", field=what) from None


def next_state(current: Status | str, target: Status | str, role: Role | str) -> Status:
    """Return `target` if `role` may move a referral from `current` to it; else raise."""
    cur = _coerce(current, "current")
    tgt = _coerce(target, "target")
    try:
        who = Role(role)
    except ValueError:
        raise InvalidTransition("unknown role", field="role") from None
    roles = TRANSITIONS.get((cur, tgt))
    if roles is None:
        raise InvalidTransition(f"{cur.value} -> {tgt.value} is not a lifecycle transition")
    if who not in roles:
        raise InvalidTransition(f"{who.value} may not move {cur.value} -> {tgt.value}")
    return tgt


def allowed_targets(current: Status | str, role: Role | str) -> frozenset[Status]:
    cur = _coerce(current, "current")
    who = Role(role)
    return frozenset(t for (f, t), roles in TRANSITIONS.items() if f == cur and who in roles)


def is_terminal(status: Status | str) -> bool:
    return _coerce(status, "status") in TERMINAL
