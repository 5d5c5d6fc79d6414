"""Maintenance windows: when they are open, how a windowed step waits, and their API.

The project clock stands at Tuesday 2030-01-01 09:00 UTC (tests.conftest.Clock).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from tenantops.audit.models import AuditEntry
from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.errors import Unprocessable
from tenantops.events.models import OutboxEvent
from tenantops.runbooks import engine, windows
from tenantops.runbooks.actions import ActionContext, FunctionAction, StepFailed, StepResult
from tenantops.runbooks.models import MaintenanceWindow
from tenantops.runbooks.spec import parse
from tenantops.runbooks.windows import Weekly
from tests.conftest import Actors, Clock
from tests.runbooks.test_engine import drain, run_of, runbook, start, steps, worker

OLI = Principal("oli", frozenset({Role.OPS_ENGINEER}))
TUESDAY_9 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


def utc(day: int, hour: int, minute: int = 0, month: int = 1) -> datetime:
    return datetime(2030, month, day, hour, minute, tzinfo=UTC)


def in_2026(month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


# When a window is open --------------------------------------------------------------------


def test_inside_a_window_is_now_and_outside_is_its_next_opening() -> None:
    business = Weekly.parse(["mon", "tue", "wed", "thu", "fri"], "08:00", "18:00", "UTC")
    assert business.next_start(TUESDAY_9) == TUESDAY_9
    assert business.next_start(utc(1, 18)) == utc(2, 8)  # the end is exclusive
    assert business.next_start(utc(4, 19)) == utc(7, 8)  # Friday evening: Monday morning


def test_an_overnight_window_is_open_after_midnight_and_closes_the_next_day() -> None:
    friday_night = Weekly.parse(["fri"], "22:00", "02:00", "UTC")
    assert friday_night.next_start(utc(5, 1, 30)) == utc(5, 1, 30)  # Saturday 01:30: still open
    assert friday_night.next_start(utc(5, 2)) == utc(11, 22)  # closed: next Friday
    assert friday_night.next_start(TUESDAY_9) == utc(4, 22)


def test_local_time_in_the_windows_time_zone_whatever_the_season() -> None:
    night = Weekly.parse(["sat", "sun"], "02:00", "06:00", "Europe/Berlin")
    assert night.next_start(TUESDAY_9) == utc(5, 1)  # winter, CET = UTC+1
    assert night.next_start(utc(2, 9, month=7)) == utc(6, 0, month=7)  # summer, CEST = UTC+2
    whole_day = Weekly.parse(["sun"], "00:00", "00:00", "UTC")
    assert whole_day.next_start(utc(6, 23, 59)) == utc(6, 23, 59)


@pytest.mark.parametrize(
    ("start", "end", "opens", "closes"),
    [
        # Europe/Berlin springs forward on Sunday 2026-03-29 at 01:00 UTC: 02:00 CET is
        # 03:00 CEST, and local times from 02:00 to 02:59 do not exist that day.
        ("01:00", "02:30", in_2026(3, 29, 0, 0), in_2026(3, 29, 1, 0)),
        ("02:30", "05:00", in_2026(3, 29, 1, 0), in_2026(3, 29, 3, 0)),
        ("02:30", "03:30", in_2026(3, 29, 1, 0), in_2026(3, 29, 1, 30)),
        # ... and falls back on 2026-10-25 at 01:00 UTC: 02:30 happens twice; the first counts.
        ("02:30", "05:00", in_2026(10, 25, 0, 30), in_2026(10, 25, 4, 0)),
    ],
)
def test_a_time_the_clock_change_skips_opens_or_closes_the_window_where_the_gap_ends(
    start: str, end: str, opens: datetime, closes: datetime
) -> None:
    window = Weekly.parse(["sun"], start, end, "Europe/Berlin")
    day_before = opens.replace(hour=0, minute=0) - timedelta(hours=12)
    assert window.next_start(day_before) == opens
    assert window.next_start(opens) == opens
    assert window.next_start(closes - timedelta(seconds=1)) == closes - timedelta(seconds=1)
    assert window.next_start(closes) > closes + timedelta(days=6)  # closed until next Sunday


@pytest.mark.parametrize(
    ("days", "start", "end", "timezone", "says"),
    [
        ([], "02:00", "06:00", "UTC", "days must be"),
        (["saturday"], "02:00", "06:00", "UTC", "days must be"),
        (["sat"], "2:00", "06:00", "UTC", "start must be HH:MM"),
        (["sat"], "02:00", "24:00", "UTC", "end must be HH:MM"),
        (["sat"], "02:00", "06:00", "Mars/Olympus", "unknown time zone"),
    ],
)
def test_a_window_that_cannot_be_read_says_which_field(
    days: list[str], start: str, end: str, timezone: str, says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        Weekly.parse(days, start, end, timezone)


def test_only_an_action_step_may_name_a_window() -> None:
    with pytest.raises(Unprocessable, match="only an action step can have a window"):
        runbook("  - {name: pause, wait: 1m, window: night}\n")
    assert (
        parse(
            "id: t\nversion: '1.0'\ntitle: T\ntenant: false\nsteps:\n"
            "  - {name: change, action: noop, window: night}\n"
        )
        .runbook.steps[0]
        .window
        == "night"
    )


# A windowed step in a run -------------------------------------------------------------


def define(db: Database, name: str, days: list[str], start: str, end: str) -> None:
    with db.write() as session:
        windows.put_window(
            session, principal=OLI, name=name, days=days, start=start, end=end, timezone="UTC"
        )


def unreadable(db: Database, clock: Clock, name: str = "night") -> None:
    """Window ``name`` stored with a time zone this host does not know."""
    row = MaintenanceWindow(name=name, days=["tue"], start="22:00", end="23:00")
    row.timezone, row.updated_at, row.updated_by = "Mars/Olympus", clock.now, "someone"
    with db.write() as session:
        session.add(row)


WINDOWED = runbook(
    "  - {name: before, action: noop}\n"
    "  - {name: change, action: noop, window: night, retry: {attempts: 2, backoff: 1s}}\n"
    "  - {name: after, action: noop}\n"
)


def test_a_step_due_outside_its_window_waits_for_it_and_runs_when_it_opens(
    db: Database, clock: Clock
) -> None:
    define(db, "night", ["tue"], "22:00", "23:00")
    run_id = start(db, WINDOWED)
    w = worker(db)

    drain(w)
    held = steps(db, run_id)
    assert held["before"].status == "succeeded"
    assert (held["change"].status, held["change"].attempt) == ("ready", 0)  # never started
    assert held["change"].wake_at is not None
    assert held["change"].wake_at.replace(tzinfo=UTC) == utc(1, 22)
    assert run_of(db, run_id).status == "running"

    clock.advance(hours=12, minutes=59)  # 21:59: still closed
    drain(w)
    assert steps(db, run_id)["change"].status == "ready"
    # Said once, to subscribers and in the audit trail: which step waits, for what, until when.
    with db.read() as session:
        held = session.scalars(
            select(OutboxEvent).where(OutboxEvent.type == "io.tenantops.run.step.held")
        ).all()
        audited = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "run.step.held")
        ).all()
    assert [(e.data["step"], e.data["window"], e.data["until"]) for e in held] == [
        ("change", "night", "2030-01-01T22:00:00+00:00")
    ]
    assert [a.detail["run_id"] for a in audited] == [run_id]
    clock.advance(minutes=1)
    drain(w)
    assert run_of(db, run_id).status == "succeeded"
    assert steps(db, run_id)["change"].started_at.replace(tzinfo=UTC) == utc(1, 22)


def test_a_retry_that_falls_after_the_window_waits_for_the_next_one(
    db: Database, clock: Clock
) -> None:
    define(db, "night", ["tue", "wed"], "09:00", "09:01")
    tries: list[datetime] = []

    def flaky(ctx: ActionContext) -> StepResult:
        tries.append(clock.now)
        if len(tries) == 1:
            clock.advance(minutes=2)  # the first try outlasts the window, then fails
            raise StepFailed("flaky", retriable=True)
        return StepResult()

    loaded = runbook(
        "  - {name: change, action: flaky, window: night, retry: {attempts: 2, backoff: 1s}}\n"
    )
    run_id = start(db, loaded)
    w = worker(db, {"flaky": FunctionAction(flaky)})
    drain(w)
    assert steps(db, run_id)["change"].failures == 1
    clock.advance(seconds=1)  # the backoff is over, the window is not open
    drain(w)
    change = steps(db, run_id)["change"]
    assert (change.status, change.attempt) == ("ready", 1)
    assert change.wake_at is not None
    assert change.wake_at.replace(tzinfo=UTC) == utc(2, 9)  # Wednesday's window

    clock.advance(hours=23, minutes=57, seconds=59)
    drain(w)
    assert run_of(db, run_id).status == "succeeded"
    assert tries == [utc(1, 9), utc(2, 9)]


def test_a_window_moved_to_now_starts_its_held_step_and_a_deleted_one_fails_it(
    db: Database, clock: Clock
) -> None:
    define(db, "night", ["fri"], "22:00", "23:00")
    moved = start(db, WINDOWED)
    w = worker(db)
    drain(w)
    wake = steps(db, moved)["change"].wake_at
    assert wake is not None
    assert wake.replace(tzinfo=UTC) == utc(4, 22)

    define(db, "night", ["tue"], "09:00", "10:00")  # open now: no waiting until Friday
    drain(w)
    assert run_of(db, moved).status == "succeeded"

    define(db, "night", ["fri"], "22:00", "23:00")
    held = start(db, WINDOWED)
    drain(w)
    assert steps(db, held)["change"].status == "ready"
    with db.write() as session:
        windows.delete_window(session, principal=OLI, name="night")
    drain(w)
    assert run_of(db, held).status == "failed"
    assert "maintenance window 'night' is not defined" in (run_of(db, held).error or "")


def test_a_window_that_cannot_be_read_fails_its_run_and_stalls_no_other(
    db: Database, clock: Clock
) -> None:
    unreadable(db, clock)  # e.g. a time zone the API host knew and this worker does not
    windowed, plain = start(db, WINDOWED), start(db, runbook("  - {name: one, action: noop}\n"))
    drain(worker(db))
    assert run_of(db, plain).status == "succeeded"
    failed = run_of(db, windowed)
    assert failed.status == "failed"
    assert "maintenance window 'night' cannot be read here" in (failed.error or "")
    assert "unknown time zone 'Mars/Olympus'" in (failed.error or "")


def _waits_on_a_lock(db: Database, statement: str) -> bool:
    """Whether a session waits on a row lock in ``statement`` (PostgreSQL); SQLite runs one
    writer at a time, so there the waiting writer starts after the holder commits."""
    if not db.url.startswith("postgresql"):
        time.sleep(0.3)
        return True
    with db.read() as session:
        waiting = session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE :q"
            ),
            {"q": f"{statement}%"},
        )
    return bool(waiting)


def test_a_window_opened_while_a_claim_holds_its_step_wakes_the_step(
    db: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim read the window closed and is about to push the step out to Friday; the
    change that opens the window now must wait for it and wake the step all the same."""
    define(db, "night", ["fri"], "22:00", "23:00")
    run_id = start(db, runbook("  - {name: change, action: noop, window: night}\n"))
    read, go = threading.Event(), threading.Event()
    hold = windows.hold

    def slow_hold(session: Session, name: str, due: datetime) -> datetime:
        found = hold(session, name, due)
        read.set()
        go.wait(30)
        return found

    monkeypatch.setattr(windows, "hold", slow_hold)

    def claim() -> None:
        with db.write() as session:
            engine.claim(session, worker="w1", limit=5)

    claimer = threading.Thread(target=claim)
    claimer.start()
    assert read.wait(30)
    opener = threading.Thread(target=lambda: define(db, "night", ["tue"], "09:00", "10:00"))
    opener.start()
    try:
        for _ in range(100):
            if _waits_on_a_lock(db, "UPDATE run_steps"):
                break
            time.sleep(0.05)
        else:
            pytest.fail("opening the window did not wait for the claim holding the step")
    finally:
        go.set()
        claimer.join(30)
        opener.join(30)

    woken = steps(db, run_id)["change"].wake_at
    assert woken is not None
    assert woken.replace(tzinfo=UTC) == clock.now  # due now, not on Friday
    drain(worker(db))
    assert run_of(db, run_id).status == "succeeded"


def test_a_window_nobody_defined_fails_the_run_saying_how_to_define_it(
    db: Database, clock: Clock
) -> None:
    run_id = start(db, WINDOWED)
    drain(worker(db))
    run = run_of(db, run_id)
    assert run.status == "failed"
    assert "maintenance window 'night' is not defined" in (run.error or "")
    assert "tenantops windows set night" in (run.error or "")


# The API ---------------------------------------------------------------------------


BODY = {"days": ["sat", "sun"], "start": "02:00", "end": "06:00", "timezone": "Europe/Berlin"}


def test_ops_define_read_and_delete_a_window_and_each_change_is_audited(
    client: TestClient, actors: Actors, db: Database, clock: Clock
) -> None:
    r = client.put("/api/v1/maintenance-windows/night", json=BODY, headers=actors.ops)
    assert r.status_code == 200, r.text
    window = r.json()
    assert (window["open_now"], window["next_start"]) == (False, "2030-01-05T01:00:00Z")
    assert window["updated_by"] == "oli"

    listed = client.get("/api/v1/maintenance-windows", headers=actors.qa).json()
    assert [w["name"] for w in listed] == ["night"]
    changed = client.put(
        "/api/v1/maintenance-windows/night",
        json={**BODY, "days": ["tue"], "start": "08:00", "end": "10:00", "timezone": "UTC"},
        headers=actors.admin,
    ).json()
    assert changed["open_now"] is True

    assert client.delete("/api/v1/maintenance-windows/night", headers=actors.ops).status_code == 204
    assert client.get("/api/v1/maintenance-windows/night", headers=actors.ops).status_code == 404
    with db.read() as session:
        trail = session.scalars(
            select(AuditEntry).where(AuditEntry.action.like("maintenance_window.%"))
        ).all()
    assert [(e.action, e.actor) for e in trail] == [
        ("maintenance_window.set", "oli"),
        ("maintenance_window.set", "root"),
        ("maintenance_window.deleted", "oli"),
    ]
    assert trail[1].changes["window"] == {
        "before": "sat,sun 02:00-06:00 Europe/Berlin",
        "after": "tue 08:00-10:00 UTC",
    }


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"days": ["someday"]}, "days"),
        ({"start": "25:00"}, "start"),
        ({"days": []}, "days"),
    ],
)
def test_a_bad_window_is_a_problem_and_stores_nothing(
    client: TestClient, actors: Actors, change: dict[str, object], says: str
) -> None:
    r = client.put("/api/v1/maintenance-windows/night", json={**BODY, **change}, headers=actors.ops)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert says in r.text
    assert client.get("/api/v1/maintenance-windows", headers=actors.ops).json() == []


def test_a_window_this_server_cannot_read_is_listed_with_the_reason(
    client: TestClient, actors: Actors, db: Database, clock: Clock
) -> None:
    unreadable(db, clock)
    r = client.get("/api/v1/maintenance-windows", headers=actors.ops)
    assert r.status_code == 200, r.text
    (listed,) = r.json()
    assert (listed["open_now"], listed["next_start"]) == (False, None)
    assert "unknown time zone 'Mars/Olympus'" in listed["error"]
    assert listed["updated_at"] == "2030-01-01T09:00:00Z"

    # What the error says to do works: define it again (or delete it).
    fixed = client.put("/api/v1/maintenance-windows/night", json=BODY, headers=actors.ops)
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["error"] is None
    unreadable(db, clock, name="other")
    gone = client.delete("/api/v1/maintenance-windows/other", headers=actors.ops)
    assert gone.status_code == 204, gone.text
    with db.read() as session:
        trail = session.scalars(
            select(AuditEntry).where(AuditEntry.action.like("maintenance_window.%"))
        ).all()
    assert [e.changes["window"]["before"] for e in trail] == [
        "tue 22:00-23:00 Mars/Olympus",
        "tue 22:00-23:00 Mars/Olympus",
    ]


def test_only_ops_and_admins_change_windows(client: TestClient, actors: Actors) -> None:
    for who in (actors.gov, actors.qa, actors.auditor, actors.am):
        r = client.put("/api/v1/maintenance-windows/night", json=BODY, headers=who)
        assert r.status_code == 403, r.text
    assert client.delete("/api/v1/maintenance-windows/night", headers=actors.qa).status_code == 403
    bad_name = client.put("/api/v1/maintenance-windows/Night!", json=BODY, headers=actors.ops)
    assert bad_name.status_code == 422


def test_a_run_shows_the_window_its_step_waits_for(
    client: TestClient, actors: Actors, db: Database, clock: Clock
) -> None:
    define(db, "night", ["tue"], "22:00", "23:00")
    run_id = start(db, WINDOWED)
    drain(worker(db))
    run = client.get(f"/api/v1/runs/{run_id}", headers=actors.ops).json()
    change = next(s for s in run["steps"] if s["name"] == "change")
    assert (change["window"], change["status"]) == ("night", "ready")
    assert change["wake_at"] == "2030-01-01T22:00:00Z"
