"""The event state machine, as data: each action names the states it may start from and where it
leads. The API, the demo data and the tests all read this one table."""

from __future__ import annotations

from enum import StrEnum

from hub.errors import InvalidTransition


class Status(StrEnum):
    REPORTED = "reported"
    ACCEPTED = "accepted"
    DISPATCHED = "dispatched"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REJECTED = "rejected"
    REOPENED = "reopened"


class Action(StrEnum):
    REPORT = "report"
    ACCEPT = "accept"
    DISPATCH = "dispatch"
    START = "start"
    RESOLVE = "resolve"
    CLOSE = "close"
    REJECT = "reject"
    REOPEN = "reopen"
    NOTE = "note"


TRANSITIONS: dict[Action, tuple[frozenset[Status], Status]] = {
    Action.ACCEPT: (frozenset({Status.REPORTED, Status.REOPENED}), Status.ACCEPTED),
    # Dispatching again from "dispatched" hands the event to another department.
    Action.DISPATCH: (frozenset({Status.ACCEPTED, Status.DISPATCHED}), Status.DISPATCHED),
    Action.START: (frozenset({Status.DISPATCHED}), Status.IN_PROGRESS),
    Action.RESOLVE: (frozenset({Status.IN_PROGRESS}), Status.RESOLVED),
    Action.CLOSE: (frozenset({Status.RESOLVED}), Status.CLOSED),
    Action.REJECT: (
        frozenset({Status.REPORTED, Status.ACCEPTED, Status.REOPENED}),
        Status.REJECTED,
    ),
    Action.REOPEN: (
        frozenset({Status.RESOLVED, Status.CLOSED, Status.REJECTED}),
        Status.REOPENED,
    ),
}

OPEN_STATUSES = frozenset(
    {Status.REPORTED, Status.ACCEPTED, Status.DISPATCHED, Status.IN_PROGRESS, Status.REOPENED}
)


def next_status(current: Status, action: Action) -> Status:
    sources, target = TRANSITIONS[action]
    if current not in sources:
        allowed = sorted(a.value for a, (src, _) in TRANSITIONS.items() if current in src)
        raise InvalidTransition(
            f"cannot {action.value} an event that is {current.value}",
            status=current.value,
            action=action.value,
            allowedActions=allowed,
        )
    return target
