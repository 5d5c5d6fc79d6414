"""The state machines of incidents, problems and changes: pure tables, no I/O.

Names as ServiceNow has them (``in_progress``, ``root_cause_analysis``, …), so
an operator who knows one tool reads the other. Each kind is a table of
``state -> states it may move to``; ``cancelled`` is reachable from every open
state (for a change: only before ``implement`` — once work started on the
platform it is reviewed, not abandoned). A *standard* change is pre-authorised
(a runbook whose request passed its approval gate opens it): it goes from
``new`` straight to ``scheduled``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from enum import StrEnum


class Kind(StrEnum):
    """What a record is."""

    INCIDENT = "incident"
    CHANGE = "change"
    PROBLEM = "problem"


PREFIX: Mapping[Kind, str] = {Kind.INCIDENT: "INC", Kind.CHANGE: "CHG", Kind.PROBLEM: "PRB"}

NEW = "new"
IN_PROGRESS = "in_progress"
ON_HOLD = "on_hold"
RESOLVED = "resolved"
CLOSED = "closed"
CANCELLED = "cancelled"
ASSESS = "assess"
ROOT_CAUSE_ANALYSIS = "root_cause_analysis"
FIX_IN_PROGRESS = "fix_in_progress"
AUTHORIZE = "authorize"
SCHEDULED = "scheduled"
IMPLEMENT = "implement"
REVIEW = "review"

INCIDENT: Mapping[str, frozenset[str]] = {
    # Resolved straight from new: the alert that opened it cleared before anyone took it
    # up (nobody acknowledged it, and the record says so).
    NEW: frozenset({IN_PROGRESS, RESOLVED, CANCELLED}),
    IN_PROGRESS: frozenset({ON_HOLD, RESOLVED, CANCELLED}),
    ON_HOLD: frozenset({IN_PROGRESS, RESOLVED, CANCELLED}),
    # Reopened when the fix did not hold; closed once the caller agrees.
    RESOLVED: frozenset({IN_PROGRESS, CLOSED}),
    CLOSED: frozenset(),
    CANCELLED: frozenset(),
}
PROBLEM: Mapping[str, frozenset[str]] = {
    NEW: frozenset({ASSESS, CANCELLED}),
    ASSESS: frozenset({ROOT_CAUSE_ANALYSIS, CANCELLED}),
    ROOT_CAUSE_ANALYSIS: frozenset({FIX_IN_PROGRESS, CANCELLED}),
    FIX_IN_PROGRESS: frozenset({RESOLVED, CANCELLED}),
    RESOLVED: frozenset({CLOSED}),
    CLOSED: frozenset(),
    CANCELLED: frozenset(),
}
CHANGE: Mapping[str, frozenset[str]] = {
    NEW: frozenset({ASSESS, CANCELLED}),
    ASSESS: frozenset({AUTHORIZE, CANCELLED}),
    AUTHORIZE: frozenset({SCHEDULED, CANCELLED}),
    SCHEDULED: frozenset({IMPLEMENT, CANCELLED}),
    IMPLEMENT: frozenset({REVIEW}),
    REVIEW: frozenset({CLOSED}),
    CLOSED: frozenset(),
    CANCELLED: frozenset(),
}
TABLES: Mapping[Kind, Mapping[str, frozenset[str]]] = {
    Kind.INCIDENT: INCIDENT,
    Kind.PROBLEM: PROBLEM,
    Kind.CHANGE: CHANGE,
}
# States in which nothing is left to do: not "open" in listings.
DONE = frozenset({RESOLVED, CLOSED, CANCELLED})
TERMINAL = frozenset({CLOSED, CANCELLED})
# Moves out of new that mean someone took the record up (it is acknowledged then); a
# record resolved or cancelled straight from new never was.
TAKEN_UP = frozenset({IN_PROGRESS, ASSESS, SCHEDULED})
STANDARD = "standard"

# ServiceNow's numeric state codes (its Table API speaks these) and our names.
SERVICENOW_CODES: Mapping[Kind, Mapping[str, str]] = {
    Kind.INCIDENT: {
        "1": NEW,
        "2": IN_PROGRESS,
        "3": ON_HOLD,
        "6": RESOLVED,
        "7": CLOSED,
        "8": CANCELLED,
    },
    Kind.CHANGE: {
        "-5": NEW,
        "-4": ASSESS,
        "-3": AUTHORIZE,
        "-2": SCHEDULED,
        "-1": IMPLEMENT,
        "0": REVIEW,
        "3": CLOSED,
        "4": CANCELLED,
    },
    Kind.PROBLEM: {
        "101": NEW,
        "102": ASSESS,
        "103": ROOT_CAUSE_ANALYSIS,
        "104": FIX_IN_PROGRESS,
        "106": RESOLVED,
        "107": CLOSED,
    },
}


def allowed(kind: Kind, state: str, *, standard: bool = False) -> frozenset[str]:
    """The states a record of ``kind`` in ``state`` may move to next."""
    nexts = TABLES[kind].get(state, frozenset())
    if kind is Kind.CHANGE and standard and state == NEW:
        # Pre-authorised: no assessment or authorisation of its own.
        return frozenset({SCHEDULED, CANCELLED})
    return nexts


def needs_resolution(kind: Kind, to: str) -> bool:
    """Resolving an incident or problem, or closing a change, must say how it ended."""
    if kind is Kind.CHANGE:
        return to == CLOSED
    return to == RESOLVED


def name_of(kind: Kind, state: str) -> str | None:
    """Our name for ``state`` (a name or a ServiceNow code); None if it is neither."""
    if state in TABLES[kind]:
        return state
    return SERVICENOW_CODES[kind].get(state.strip())


def code_of(kind: Kind, state: str) -> str | None:
    """ServiceNow's code for one of our names (None if it has none)."""
    for code, name in SERVICENOW_CODES[kind].items():
        if name == state:
            return code
    return None


def path(kind: Kind, start: str, goal: str, *, standard: bool = False) -> list[str] | None:
    """The shortest run of legal moves from ``start`` to ``goal`` (without ``start``);
    ``[]`` when already there, None when it cannot be reached.

    A runbook step that asks for ``closed`` is taken there one legal move at a
    time, each recorded, rather than jumping over the machine.
    """
    if start == goal:
        return []
    seen = {start}
    queue: deque[tuple[str, list[str]]] = deque([(start, [])])
    while queue:
        state, walked = queue.popleft()
        # Sorted: the same walk every time.
        for nxt in sorted(allowed(kind, state, standard=standard)):
            if nxt in seen or (nxt == CANCELLED and goal != CANCELLED):
                continue
            if nxt == goal:
                return [*walked, nxt]
            seen.add(nxt)
            queue.append((nxt, [*walked, nxt]))
    return None
