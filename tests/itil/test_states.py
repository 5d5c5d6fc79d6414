"""The state machines of incidents, problems and changes, as pure tables."""

from __future__ import annotations

import pytest

from tenantops.itil import states
from tenantops.itil.states import Kind


def test_an_incident_is_worked_held_resolved_reopened_and_closed() -> None:
    assert states.allowed(Kind.INCIDENT, "new") == {"in_progress", "resolved", "cancelled"}
    assert states.allowed(Kind.INCIDENT, "in_progress") == {"on_hold", "resolved", "cancelled"}
    assert "in_progress" in states.allowed(Kind.INCIDENT, "on_hold")
    assert states.allowed(Kind.INCIDENT, "resolved") == {"in_progress", "closed"}
    assert states.allowed(Kind.INCIDENT, "closed") == frozenset()
    assert states.allowed(Kind.INCIDENT, "cancelled") == frozenset()


def test_a_problem_goes_through_assessment_and_root_cause_analysis() -> None:
    walk = states.path(Kind.PROBLEM, "new", "closed")
    assert walk == ["assess", "root_cause_analysis", "fix_in_progress", "resolved", "closed"]
    for open_state in ("new", "assess", "root_cause_analysis", "fix_in_progress"):
        assert "cancelled" in states.allowed(Kind.PROBLEM, open_state)
    assert "cancelled" not in states.allowed(Kind.PROBLEM, "resolved")


def test_a_change_is_cancelled_only_before_implementation() -> None:
    walk = states.path(Kind.CHANGE, "new", "closed")
    assert walk == ["assess", "authorize", "scheduled", "implement", "review", "closed"]
    for before in ("new", "assess", "authorize", "scheduled"):
        assert "cancelled" in states.allowed(Kind.CHANGE, before)
    for after in ("implement", "review"):
        assert "cancelled" not in states.allowed(Kind.CHANGE, after)


def test_a_standard_change_is_pre_authorised() -> None:
    assert states.allowed(Kind.CHANGE, "new", standard=True) == {"scheduled", "cancelled"}
    assert states.path(Kind.CHANGE, "new", "closed", standard=True) == [
        "scheduled",
        "implement",
        "review",
        "closed",
    ]


def test_a_walk_never_passes_through_cancelled_and_may_be_impossible() -> None:
    assert states.path(Kind.INCIDENT, "new", "closed") == ["resolved", "closed"]
    assert states.path(Kind.INCIDENT, "closed", "new") is None
    assert states.path(Kind.INCIDENT, "new", "new") == []
    assert states.path(Kind.INCIDENT, "on_hold", "cancelled") == ["cancelled"]


@pytest.mark.parametrize(
    ("kind", "to", "needed"),
    [
        (Kind.INCIDENT, "resolved", True),
        (Kind.INCIDENT, "closed", False),
        (Kind.PROBLEM, "resolved", True),
        (Kind.CHANGE, "closed", True),
        (Kind.CHANGE, "review", False),
    ],
)
def test_what_needs_a_resolution(kind: Kind, to: str, needed: bool) -> None:
    assert states.needs_resolution(kind, to) is needed


def test_servicenow_codes_map_to_names_and_back() -> None:
    assert [states.name_of(Kind.INCIDENT, c) for c in "123678"] == [
        "new",
        "in_progress",
        "on_hold",
        "resolved",
        "closed",
        "cancelled",
    ]
    assert states.name_of(Kind.CHANGE, "-3") == "authorize"
    assert states.name_of(Kind.CHANGE, "3") == "closed"
    assert states.name_of(Kind.PROBLEM, "103") == "root_cause_analysis"
    assert states.name_of(Kind.PROBLEM, "closed") == "closed"
    assert states.name_of(Kind.INCIDENT, "99") is None
    assert states.code_of(Kind.CHANGE, "scheduled") == "-2"
    for kind, codes in states.SERVICENOW_CODES.items():
        assert set(codes.values()) <= set(states.TABLES[kind])
