"""Escalation over time (the project clock moved by hand): level 1 is told, then level 2
when nobody acknowledges within ``after``, round again on ``repeat``, exhausted at the end;
an acknowledgement stops it. Nobody is told twice, whatever sweeps run or crash."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.notify.local import OutboxNotifier
from tenantops.notifications.models import OutboxMessage
from tenantops.oncall import escalator, service
from tenantops.oncall.models import PageEvent
from tenantops.runbooks.actions import Action
from tenantops.wiring import build_actions
from tests.conftest import Clock
from tests.oncall.test_pages import OLI

DOCUMENT: dict[str, Any] = {
    "rotations": {
        "primary": {
            "timezone": "Europe/Berlin",
            "start": "2029-12-31T09:00",
            "length": "7d",
            "members": ["alice@acme.example", "bob@acme.example"],
        }
    },
    "policies": {
        "default": {
            "levels": [
                {"targets": ["rotation:primary"], "after": "10m"},
                {"targets": ["lead@acme.example", "role:governance"], "after": "20m"},
            ],
            "repeat": 1,
        }
    },
}


@pytest.fixture
def send(db: Database, settings: Settings) -> Action:
    """The real ``notify.send`` of the embedded default: messages land in the outbox."""
    return build_actions(settings, db)["notify.send"]


def messages(db: Database) -> list[OutboxMessage]:
    with db.read() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.created_at)))


def timeline(db: Database, page_id: str) -> list[tuple[str, int | None, list[str]]]:
    with db.read() as session:
        detail = service.get_page(session, page_id=page_id)
    return [(e.event, e.level, e.targets) for e in detail.timeline]


def open_page(db: Database, key: str = "itil:r1") -> str:
    with db.write() as session:
        service.apply_config(session, DOCUMENT, OLI)
        return service.trigger(
            session, key=key, summary="orders API down", severity="critical", actor=OLI
        ).id


def sweep(db: Database, clock: Clock, send: Action, *, limit: int = escalator.BATCH) -> int:
    return escalator.escalate_due(
        db, send, outbox=OutboxNotifier(db).queued, clock=lambda: clock.now, limit=limit
    )


def test_levels_are_told_in_turn_then_round_again_then_exhausted(
    db: Database, clock: Clock, send: Action
) -> None:
    page_id = open_page(db)
    assert sweep(db, clock, send) == 1  # level 1: alice is on call this week
    assert [m.recipients for m in messages(db)] == [["alice@acme.example"]]
    clock.advance(minutes=9)
    assert sweep(db, clock, send) == 0  # not yet
    clock.advance(minutes=1)
    assert sweep(db, clock, send) == 1  # level 2: the lead and governance
    told = [sorted(m.recipients) for m in messages(db)]
    assert told[1:] == [["lead@acme.example"], ["governance@localhost"]]
    clock.advance(minutes=20)
    assert sweep(db, clock, send) == 1  # repeat: level 1 again
    clock.advance(minutes=10)
    assert sweep(db, clock, send) == 1  # level 2 again
    clock.advance(minutes=20)
    assert sweep(db, clock, send) == 1  # out of levels and repeats
    clock.advance(hours=5)
    assert sweep(db, clock, send) == 0
    with db.read() as session:
        page = service.get_page(session, page_id=page_id)
    assert page.status == "triggered"
    assert page.exhausted
    assert page.next_at is None
    assert [(e.event, e.level) for e in page.timeline] == [
        ("triggered", None),
        ("notified", 1),
        ("escalated", 2),
        ("escalated", 1),
        ("escalated", 2),
        ("exhausted", 2),
    ]
    last = messages(db)[-2:]
    assert all(m.subject.startswith("[Page unanswered]") for m in last)
    assert sorted(r for m in last for r in m.recipients) == [
        "governance@localhost",
        "lead@acme.example",
    ]
    assert len(messages(db)) == 1 + 2 + 1 + 2 + 2


def test_the_message_says_what_which_tenant_the_level_and_how_to_acknowledge(
    db: Database, clock: Clock, send: Action
) -> None:
    page_id = open_page(db)
    sweep(db, clock, send)
    (message,) = messages(db)
    assert message.subject == "[Page critical] orders API down"
    assert "level 1 of 2 of policy default" in message.body
    assert "Tenant:   none (the platform)" in message.body
    assert f"tenantops oncall ack {page_id}" in message.body
    assert f"/api/v1/oncall/pages/{page_id}/acknowledge" in message.body
    assert "within 10 min" in message.body


def test_an_acknowledgement_stops_the_escalation(db: Database, clock: Clock, send: Action) -> None:
    page_id = open_page(db)
    sweep(db, clock, send)
    clock.advance(minutes=4)
    with db.write() as session:
        service.acknowledge(session, key="itil:r1", actor=OLI)
    clock.advance(hours=2)
    assert sweep(db, clock, send) == 0
    assert len(messages(db)) == 1
    assert [e for e, _, _ in timeline(db, page_id)] == ["triggered", "notified", "acknowledged"]


def test_a_stopping_worker_claims_no_further_page(db: Database, clock: Clock, send: Action) -> None:
    first, second = open_page(db, "itil:r1"), open_page(db, "itil:r2")
    answers = iter([False, True])  # stopping() turns true once the first page is told
    taken = escalator.escalate_due(
        db,
        send,
        outbox=OutboxNotifier(db).queued,
        clock=lambda: clock.now,
        stopping=lambda: next(answers),
    )
    assert taken == 1
    with db.read() as session:
        told = [service.get_page(session, page_id=p).level == 1 for p in (first, second)]
    # The other page is not claimed: the next sweep takes it at once.
    assert sorted(told) == [False, True]
    assert sweep(db, clock, send) == 1


def test_a_sweep_that_died_after_sending_does_not_tell_anyone_twice(
    db: Database, clock: Clock, send: Action
) -> None:
    page_id = open_page(db)
    with db.write() as session:
        (step,) = escalator.claim(session, clock.now)
    escalator.send_step(step, send)  # ... and the process dies before recording it
    assert len(messages(db)) == 1
    assert sweep(db, clock, send) == 0  # the claim holds
    clock.advance(escalator.CLAIM)
    assert sweep(db, clock, send) == 1  # taken over: the same message, not a second
    assert len(messages(db)) == 1
    assert [e for e, _, _ in timeline(db, page_id)] == ["triggered", "notified"]


def test_a_page_answered_while_its_message_went_out_stays_answered(
    db: Database, clock: Clock, send: Action
) -> None:
    page_id = open_page(db)
    with db.write() as session:
        (step,) = escalator.claim(session, clock.now)
    told = escalator.send_step(step, send)
    with db.write() as session:
        service.acknowledge(session, key="itil:r1", actor=OLI)
    with db.write() as session:
        escalator.record(session, step, told, clock.now)
    with db.read() as session:
        page = service.get_page(session, page_id=page_id)
    assert page.status == "acknowledged"
    assert page.next_at is None
    assert [e.event for e in page.timeline] == ["triggered", "acknowledged", "told"]
    assert page.timeline[-1].targets == ["alice@acme.example"]


def test_a_failed_send_is_on_the_timeline_and_the_escalation_goes_on(
    db: Database, clock: Clock, settings: Settings
) -> None:
    settings.notify.governance = []  # role:governance names nobody: that part fails
    send = build_actions(settings, db)["notify.send"]
    page_id = open_page(db)
    sweep(db, clock, send)
    clock.advance(minutes=10)
    assert sweep(db, clock, send) == 1
    events = timeline(db, page_id)
    assert [e for e, _, _ in events] == ["triggered", "notified", "notify_failed", "escalated"]
    assert events[-1][2] == ["lead@acme.example"]
    clock.advance(minutes=20)
    assert sweep(db, clock, send) == 1  # round two


def test_two_escalators_at_once_tell_each_page_once(
    db: Database, clock: Clock, send: Action
) -> None:
    with db.write() as session:
        service.apply_config(session, DOCUMENT, OLI)
        for i in range(30):
            service.trigger(
                session, key=f"k{i}", summary=f"incident {i}", severity="high", actor=OLI
            )
    start = threading.Barrier(2)
    taken: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            start.wait()
            taken.append(sweep(db, clock, send, limit=5))
            taken.append(sweep(db, clock, send))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(taken) == 30
    with db.read() as session:
        sent = session.scalar(select(func.count()).select_from(OutboxMessage))
        notified = session.scalar(
            select(func.count()).select_from(PageEvent).where(PageEvent.event == "notified")
        )
    assert sent == 30
    assert notified == 30
