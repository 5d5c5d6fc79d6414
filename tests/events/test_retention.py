"""Outbox retention: what is done and older than the window goes; everything else stays."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select, text, update

from tenantops.config import EventsSettings
from tenantops.db import Database
from tenantops.events import catalogue, outbox
from tenantops.events.models import Delivery, OutboxEvent, Retention, Subscription
from tenantops.events.publishers.port import NoBroker
from tenantops.events.relay import Relay
from tenantops.events.retention import prune, pruned_through
from tenantops.kit.clock import utcnow
from tenantops.kit.ids import new_id
from tests import flows
from tests.conftest import Actors, CliRunner, Clock


def _emit(db: Database, *, handed_on: bool = True) -> int:
    """One event, published and dispatched unless ``handed_on`` is false; its seq."""
    with db.write() as session:
        event = outbox.emit(
            session,
            catalogue.ACCESS_GRANTED,
            catalogue.AccessChanged(actor="amy", grant_id=new_id(), subject="bob"),
        )
        session.flush()
        if handed_on:
            event.published_at = event.dispatched_at = utcnow()
        return event.seq


def _subscription(db: Database, *, deleted: bool = False) -> str:
    with db.write() as session:
        sub = Subscription(
            id=new_id(),
            url="http://127.0.0.1:9/hook",
            types=["*"],
            created_by="amy",
            created_at=utcnow(),
            deleted_at=utcnow() if deleted else None,
        )
        session.add(sub)
        return sub.id


def _delivery(db: Database, seq: int, subscription: str, status: str) -> str:
    with db.write() as session:
        delivery = Delivery(
            id=new_id(),
            subscription_id=subscription,
            event_seq=seq,
            tenant_id=None,
            status=status,
            attempts=1,
            created_at=utcnow(),
            delivered_at=utcnow() if status == "delivered" else None,
        )
        session.add(delivery)
        return delivery.id


def _left(db: Database) -> tuple[set[int], set[str]]:
    with db.read() as session:
        return (
            set(session.scalars(select(OutboxEvent.seq))),
            set(session.scalars(select(Delivery.id))),
        )


def test_only_what_is_done_and_older_than_the_window_is_deleted(db: Database, clock: Clock) -> None:
    live, retired = _subscription(db), _subscription(db, deleted=True)
    done = _emit(db)
    unpublished = _emit(db, handed_on=False)
    undispatched = _emit(db)
    with db.write() as session:  # published, but not yet given its deliveries
        session.execute(
            update(OutboxEvent).where(OutboxEvent.seq == undispatched).values(dispatched_at=None)
        )
    delivered_event = _emit(db)
    delivered = _delivery(db, delivered_event, live, "delivered")
    cancelled = _delivery(db, _emit(db), live, "cancelled")
    dead_of_retired = _delivery(db, _emit(db), retired, "dead")
    pending_event = _emit(db)
    pending = _delivery(db, pending_event, live, "pending")
    dead_event = _emit(db)
    dead = _delivery(db, dead_event, live, "dead")
    # One event with two webhooks: one delivered, one still pending.
    shared_event = _emit(db)
    _delivery(db, shared_event, retired, "delivered")
    shared_pending = _delivery(db, shared_event, live, "pending")

    clock.advance(days=31)
    recent = _emit(db)
    recent_delivery = _delivery(db, recent, live, "delivered")

    pruned = prune(db, before=utcnow() - timedelta(days=30))

    events, deliveries = _left(db)
    assert events == {
        unpublished,
        undispatched,
        pending_event,
        dead_event,
        shared_event,
        recent,
    }
    assert deliveries == {pending, dead, shared_pending, recent_delivery}
    assert done not in events
    assert not {delivered, cancelled, dead_of_retired} & deliveries
    assert (pruned.events, pruned.deliveries, pruned.more) == (4, 4, False)

    # Pruning again finds nothing more to do.
    assert prune(db, before=utcnow() - timedelta(days=30)) == type(pruned)()


def test_a_large_backlog_goes_in_batches_and_says_when_more_is_left(
    db: Database, clock: Clock
) -> None:
    for _ in range(25):
        _emit(db)
    clock.advance(days=40)
    keep = _emit(db)
    before = utcnow() - timedelta(days=30)

    # Three transactions: the (empty) deliveries' pass, then two of events.
    first = prune(db, before=before, batch=10, max_batches=3)
    assert (first.events, first.more) == (20, True)
    rest = prune(db, before=before, batch=10, max_batches=3)
    assert (rest.events, rest.more) == (5, False)
    assert _left(db)[0] == {keep}


def test_the_newest_event_stays_so_sequence_numbers_are_never_handed_out_again(
    db: Database, clock: Clock
) -> None:
    """On SQLite ``seq`` is a rowid: deleting the highest would let the next event reuse it."""
    old = [_emit(db) for _ in range(3)]
    clock.advance(days=40)  # a quiet month: every event is old

    pruned = prune(db, before=utcnow() - timedelta(days=30))

    assert (pruned.events, _left(db)[0]) == (2, {old[-1]})
    assert _emit(db) > old[-1]


def test_the_leading_relay_prunes_by_its_window_and_zero_keeps_everything(
    db: Database, clock: Clock
) -> None:
    for _ in range(3):
        _emit(db)
    clock.advance(days=8)
    _emit(db)

    keeper = Relay(db, NoBroker(), EventsSettings(retention_days=0), b"k", name="keeper")
    keeper.run_once()
    keeper.resign()
    assert len(_left(db)[0]) == 4

    relay = Relay(db, NoBroker(), EventsSettings(retention_days=7), b"k", name="pruner")
    relay.run_once()
    assert (relay.stats.pruned_events, relay.stats.pruned_deliveries) == (3, 0)
    assert len(_left(db)[0]) == 1
    # Not again before the hour is up, however many rounds run meanwhile.
    _emit(db)
    clock.advance(days=8)
    relay.run_once()
    assert relay.stats.pruned_events == 3


def test_a_relay_that_does_not_lead_does_not_prune(db: Database, clock: Clock) -> None:
    _emit(db)
    clock.advance(days=40)
    leader = Relay(db, NoBroker(), EventsSettings(lease_seconds=60), b"k", name="leader")
    other = Relay(db, NoBroker(), EventsSettings(lease_seconds=60), b"k", name="other")
    assert leader.lead()
    other.run_once()
    assert other.stats.pruned_events == 0
    assert len(_left(db)[0]) == 1


def test_events_prune_on_the_command_line(db: Database, clock: Clock, cli: CliRunner) -> None:
    for _ in range(3):
        _emit(db)
    clock.advance(days=10)
    _emit(db)

    kept = cli("events", "prune")  # the default window, 30 days: nothing is that old
    assert kept.code == 0, kept.err
    assert "deleted 0 events and 0 deliveries older than 30 days" in kept.out

    done = cli("events", "prune", "--days", "7")
    assert done.code == 0, done.err
    assert "deleted 3 events and 0 deliveries older than 7 days" in done.out
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 1


def test_events_prune_refuses_a_window_of_nothing(
    db: Database, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = cli("events", "prune", "--days", "0")
    assert bad.code == 2
    assert "--days" in bad.err

    monkeypatch.setenv("TENANTOPS_EVENTS__RETENTION_DAYS", "0")
    refused = cli("events", "prune")
    assert refused.code == 1
    assert refused.err.strip() == (
        "error: events.retention_days is 0 (keep everything): pass --days to prune"
    )


def _waits_on_a_lock(db: Database) -> bool:
    """Whether the prune waits on the redelivered row (PostgreSQL).

    SQLite runs one writer at a time, so there the prune simply starts after the
    redelivery commits: the test then only shows the redelivery is kept.
    """
    if not db.url.startswith("postgresql"):
        time.sleep(0.3)
        return True
    with db.read() as session:
        waiting = session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM event_deliveries%'"
            )
        )
    return bool(waiting)


def test_a_delivery_redelivered_while_the_prune_runs_is_kept(db: Database, clock: Clock) -> None:
    live = _subscription(db)
    delivery = _delivery(db, _emit(db), live, "delivered")
    clock.advance(days=31)
    _emit(db)  # the newest event, which always stays
    before = utcnow() - timedelta(days=30)
    pruned: list[object] = []
    pruning = threading.Thread(target=lambda: pruned.append(prune(db, before=before)))
    with db.write() as session:  # a redelivery, committed while the prune waits on its row
        session.execute(
            update(Delivery).where(Delivery.id == delivery).values(status="pending", attempts=0)
        )
        session.flush()
        pruning.start()
        for _ in range(100):
            if _waits_on_a_lock(db):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the prune never waited on the redelivered row")
    pruning.join(timeout=30)
    assert pruned, "the prune did not finish"
    assert delivery in _left(db)[1]


def test_the_stream_says_how_far_retention_has_deleted(
    db: Database, clock: Clock, client: TestClient, actors: Actors
) -> None:
    """A consumer whose ``after`` is below ``pruned_through`` knows it may have missed events."""
    old = [_emit(db) for _ in range(3)]
    clock.advance(days=40)
    recent = _emit(db)
    page = flows.ok(client.get("/api/v1/events", headers=actors.auditor))
    assert page["pruned_through"] == 0

    prune(db, before=utcnow() - timedelta(days=30))

    page = flows.ok(client.get("/api/v1/events", params={"after": 0}, headers=actors.auditor))
    assert page["pruned_through"] == old[-1]  # a consumer at 0 has missed those three
    assert [int(e["sequence"]) for e in page["items"]] == [recent]
    # The mark only moves forward, and comes back if its row was lost.
    with db.write() as session:
        session.execute(delete(Retention))
    clock.advance(days=40)
    _emit(db)
    prune(db, before=utcnow() - timedelta(days=30))
    with db.read() as session:
        assert pruned_through(session) == recent
