from __future__ import annotations

import itertools

import pytest

from protocol import Role, Status, allowed_targets, is_terminal, next_state
from protocol.errors import InvalidTransition
from protocol.lifecycle import TRANSITIONS


def test_happy_path() -> None:
    s = Status.REQUESTED
    for target in ("received", "accepted", "in_progress", "completed"):
        s = next_state(s, target, Role.RECIPIENT)
    assert s is Status.COMPLETED and is_terminal(s)


def test_sender_may_cancel_until_completion() -> None:
    for s in ("requested", "received", "accepted", "in_progress"):
        assert next_state(s, "cancelled", "sender") is Status.CANCELLED
    with pytest.raises(InvalidTransition):
        next_state("completed", "cancelled", "sender")


def test_roles_are_enforced() -> None:
    with pytest.raises(InvalidTransition):
        next_state("received", "accepted", Role.SENDER)
    with pytest.raises(InvalidTransition):
        next_state("accepted", "cancelled", Role.RECIPIENT)
    with pytest.raises(InvalidTransition):
        next_state("requested", "failed", Role.RECIPIENT)


def test_terminal_states_have_no_exit() -> None:
    for s, role in itertools.product(Status, Role):
        if is_terminal(s):
            assert allowed_targets(s, role) == frozenset()


def test_table_is_exhaustive_and_everything_else_refused() -> None:
    for a, b, role in itertools.product(Status, Status, Role):
        allowed = role in TRANSITIONS.get((a, b), frozenset())
        if allowed:
            assert next_state(a, b, role) is b
        else:
            with pytest.raises(InvalidTransition):
                next_state(a, b, role)


def test_unknown_values() -> None:
    with pytest.raises(InvalidTransition):
        next_state("requested", "teleported", "recipient")
    with pytest.raises(InvalidTransition):
        next_state("requested", "received", "hub")
