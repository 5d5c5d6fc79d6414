"""A slow send is never delivered twice: a second sweep neither takes a step whose claim
still covers the first sweep's delivery (the claim outlasts the notifier's worst case),
nor delivers again a message the first sweep is still delivering (pending in the outbox
within the claim); each take and each record reads the clock afresh."""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta

from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.actions import driver_actions, local_drivers
from tenantops.drivers.notify.local import OutboxNotifier
from tenantops.drivers.notify.port import Envelope
from tenantops.kit.clock import as_utc
from tenantops.oncall import escalator, service
from tenantops.runbooks.actions import Action, ActionContext, StepResult
from tenantops.wiring import build_actions, notify_delivery
from tests.conftest import Clock
from tests.oncall.test_escalation import DOCUMENT, open_page, timeline
from tests.oncall.test_pages import OLI

WAIT = 10.0  # seconds a test waits for a thread, a generous bound


class BlockingTransport:
    """Holds every delivery until the test releases it (an SMTP server that hangs)."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, ...]] = []
        self.started = threading.Semaphore(0)
        self.release = threading.Semaphore(0)

    def deliver(self, envelope: Envelope) -> None:
        self.started.release()
        assert self.release.acquire(timeout=WAIT), "never released"
        self.delivered.append(envelope.to)


def slow_send(db: Database, settings: Settings, transport: BlockingTransport) -> Action:
    notifier = OutboxNotifier(
        db,
        transport,
        attempts=settings.smtp.attempts,
        backoff_seconds=settings.smtp.backoff_seconds,
    )
    drivers = dataclasses.replace(local_drivers(settings, db), notifier=notifier)
    return driver_actions(settings, db, drivers=drivers)["notify.send"]


def smtp(settings: Settings) -> timedelta:
    """SMTP at 30 s a try, 5 tries: a send may take 150 s and its backoffs."""
    settings.smtp.host = "smtp.example"
    settings.smtp.timeout_seconds = 30
    settings.smtp.attempts = 5
    return notify_delivery(settings)


def test_the_claim_outlasts_the_notifiers_worst_case(settings: Settings) -> None:
    assert notify_delivery(settings) == timedelta(0)  # the outbox is the mailbox
    assert escalator.claim_length(timedelta(0), 1) == escalator.CLAIM  # the floor
    delivery = smtp(settings)
    assert delivery == timedelta(seconds=5 * 30 + 0.5 + 1 + 2 + 4)
    assert escalator.claim_length(delivery, 2) > 2 * delivery


def test_a_second_sweep_does_not_take_a_step_whose_delivery_is_still_within_its_claim(
    db: Database, settings: Settings, clock: Clock
) -> None:
    delivery = smtp(settings)
    transport = BlockingTransport()
    send = slow_send(db, settings, transport)
    outbox = OutboxNotifier(db).queued
    page_id = open_page(db)
    t0 = clock.now
    first = threading.Thread(
        target=lambda: escalator.escalate_due(db, send, outbox=outbox, delivery=delivery)
    )
    first.start()
    try:
        assert transport.started.acquire(timeout=WAIT)  # the first sweep is inside SMTP
        # Past the old 60 s claim, and past the floor, but within the step's worst case.
        clock.now = t0 + delivery
        assert escalator.escalate_due(db, send, outbox=outbox, delivery=delivery) == 0
    finally:
        transport.release.release()
        first.join(WAIT)
    assert transport.delivered == [("alice@acme.example",)]  # told once
    assert [e for e, _, _ in timeline(db, page_id)] == ["triggered", "notified"]


def test_a_message_still_pending_within_the_claim_is_not_delivered_again(
    db: Database, settings: Settings, clock: Clock
) -> None:
    """The first sweep's claim lapsed (it took longer than the worst case, between
    parts), but its second message is pending and young: the second sweep passes the
    page over, and the first records its step as usual."""
    settings.notify.governance = ["governance@acme.example"]
    transport = BlockingTransport()
    send = slow_send(db, settings, transport)
    outbox = OutboxNotifier(db).queued
    page_id = open_page(db)
    t0 = clock.now
    with db.write() as session:
        (step,) = escalator.claim(session, clock.now, outbox=outbox)
    assert step.page_id == page_id
    # Straight to level 2 (the lead and role:governance): two messages, two parts.
    with db.write() as session:
        escalator.record(session, step, escalator.Told(to=["alice@acme.example"], failures=[]), t0)
    clock.advance(minutes=10)
    t1 = clock.now
    told: list[escalator.Told] = []

    def first() -> None:
        with db.write() as session:
            (level2,) = escalator.claim(session, clock.now, outbox=outbox)
        told.append(escalator.send_step(level2, send))
        with db.write() as session:
            escalator.record(session, level2, told[-1], clock.now)

    a = threading.Thread(target=first)
    a.start()
    try:
        assert transport.started.acquire(timeout=WAIT)  # the lead's message
        clock.advance(seconds=40)
        transport.release.release()
        assert transport.started.acquire(timeout=WAIT)  # governance's, created at t1 + 40 s
        clock.now = t1 + escalator.CLAIM  # the first sweep's claim has lapsed
        second = escalator.escalate_due(db, send, outbox=outbox, clock=lambda: clock.now)
        assert second == 0  # governance's message is pending and 20 s old: passed over
        with db.read() as session:
            page = service.get_page(session, page_id=page_id)
        assert page.next_at == as_utc(t1 + timedelta(seconds=40) + escalator.CLAIM)
    finally:
        transport.release.release()
        a.join(WAIT)
    assert sorted(transport.delivered) == [("governance@acme.example",), ("lead@acme.example",)]
    assert [e for e, _, _ in timeline(db, page_id)] == ["triggered", "notified", "escalated"]


def test_a_pending_message_past_the_claim_is_delivered_again(
    db: Database, settings: Settings, clock: Clock
) -> None:
    """The sender died: after the claim, the next sweep delivers it (at least once)."""
    transport = BlockingTransport()
    send = slow_send(db, settings, transport)
    outbox = OutboxNotifier(db).queued
    open_page(db)
    with db.write() as session:
        (step,) = escalator.claim(session, clock.now, outbox=outbox)
    dead = threading.Thread(target=lambda: escalator.send_step(step, send), daemon=True)
    dead.start()
    assert transport.started.acquire(timeout=WAIT)  # ... and this worker never comes back
    clock.advance(escalator.CLAIM)
    done = threading.Thread(
        target=lambda: escalator.escalate_due(db, send, outbox=outbox, clock=lambda: clock.now)
    )
    done.start()
    assert transport.started.acquire(timeout=WAIT)  # the next sweep delivers it
    transport.release.release()
    transport.release.release()
    done.join(WAIT)
    dead.join(WAIT)
    assert transport.delivered == [("alice@acme.example",)] * 2


class Ticking:
    """``notify.send`` that takes 45 s of the test's clock per message."""

    def __init__(self, send: Action, clock: Clock) -> None:
        self.send, self.clock = send, clock

    def run(self, ctx: ActionContext) -> StepResult:
        self.clock.advance(seconds=45)
        return self.send.run(ctx)


def test_each_take_and_record_reads_the_clock(
    db: Database, settings: Settings, clock: Clock
) -> None:
    with db.write() as session:
        service.apply_config(session, DOCUMENT, OLI)
        ids = [
            service.trigger(session, key=k, summary="down", severity="high", actor=OLI).id
            for k in ("k1", "k2", "k3")
        ]
    t0 = clock.now
    send = Ticking(build_actions(settings, db)["notify.send"], clock)
    taken = escalator.escalate_due(
        db, send, outbox=OutboxNotifier(db).queued, clock=lambda: clock.now
    )
    assert taken == 3
    with db.read() as session:
        due = sorted(service.get_page(session, page_id=i).next_at or t0 for i in ids)
    # Each page's level 2 is due 10 min after its own record, not after the sweep began
    # (the pages are taken one after another, in an order of their own).
    assert due == [as_utc(t0 + timedelta(seconds=45 * k, minutes=10)) for k in (1, 2, 3)]
