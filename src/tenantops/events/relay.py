"""The outbox relay: publish events to the broker and deliver them to webhooks.

One relay leads at a time (a lease row; several ``serve``/``worker``
processes on one PostgreSQL database each run one, the others stand by), so
in normal operation no event goes out twice. It reads the outbox in ``seq``
order, which is commit order, so a tenant's events go out in the order they
happened. A broker that is down leaves events in the outbox (the backlog in
``/metrics``) and is retried with backoff; nothing is lost.

Webhooks: each event gets one delivery row per matching subscription; a
delivery is retried with exponential backoff until ``webhook_attempts`` then
marked ``dead`` (visible in the API and CLI, redelivered by hand). A tenant's
deliveries to one subscription go out in order: a later one waits while an
earlier one is still pending.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

import httpx
import structlog
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import aliased

from tenantops.config import EventsSettings
from tenantops.db import Database
from tenantops.events.envelope import encode
from tenantops.events.models import Delivery, OutboxEvent, RelayLease, Subscription
from tenantops.events.publishers.port import Publisher, PublishError
from tenantops.events.retention import prune
from tenantops.events.webhooks import post, secret_for
from tenantops.kit.clock import as_utc, utcnow
from tenantops.kit.ids import new_id

log = structlog.get_logger("tenantops.events")

LEASE_NAME = "relay"
MAX_BROKER_BACKOFF = 30.0
# The leading relay deletes what fell out of the retention window this often,
# a few batches per round so publishing never waits long behind it.
PRUNE_EVERY = 3600.0
PRUNE_BATCHES_PER_ROUND = 10


_DELIVERIES = cast(Table, Delivery.__table__)
# One executemany per round. Only rows still pending: a delete or a redelivery
# that happened meanwhile wins. (Bind names differ from the columns they set.)
_RECORD_ATTEMPT = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.id == bindparam("b_id"), _DELIVERIES.c.status == "pending")
    .values(
        status=bindparam("b_status"),
        attempts=bindparam("b_attempts"),
        last_status=bindparam("b_last_status", type_=_DELIVERIES.c.last_status.type),
        last_error=bindparam("b_last_error", type_=_DELIVERIES.c.last_error.type),
        delivered_at=bindparam("b_delivered_at", type_=_DELIVERIES.c.delivered_at.type),
        next_attempt_at=bindparam("b_next_attempt_at", type_=_DELIVERIES.c.next_attempt_at.type),
    )
)


def matches(patterns: Sequence[str], event_type: str) -> bool:
    """``*`` alone, an exact type, or a prefix ending in ``*`` (``io.tenantops.tenant.*``)."""
    return any(
        p == "*" or p == event_type or (p.endswith("*") and event_type.startswith(p[:-1]))
        for p in patterns
    )


@dataclass
class RelayStats:
    published: int = 0
    dispatched: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    dead: int = 0
    pruned_events: int = 0
    pruned_deliveries: int = 0


class Relay:
    def __init__(
        self,
        db: Database,
        publisher: Publisher,
        settings: EventsSettings,
        signing_key: bytes,
        *,
        name: str | None = None,
    ) -> None:
        self.db = db
        self.publisher = publisher
        self.settings = settings
        self.key = signing_key
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{new_id()[-6:]}"
        self.stats = RelayStats()
        self._http = httpx.Client(timeout=settings.webhook_timeout_seconds)
        self._broker_retry_at = 0.0
        self._broker_backoff = 0.0
        self._prune_at = 0.0  # monotonic; the first round of a leader prunes
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # --- leadership -----------------------------------------------------------------

    def lead(self) -> bool:
        """Hold (or take over an expired) relay lease; ``False`` while another relay leads."""
        now = utcnow()
        with self.db.write() as session:
            lease = session.get(RelayLease, LEASE_NAME, with_for_update=True)
            if lease is None:
                lease = RelayLease(name=LEASE_NAME)
                session.add(lease)
            free = (
                lease.holder in (None, self.name)
                or lease.expires_at is None
                or as_utc(lease.expires_at) <= now
            )
            if not free:
                return False
            lease.holder = self.name
            lease.expires_at = now + timedelta(seconds=self.settings.lease_seconds)
        return True

    def resign(self) -> None:
        with self.db.write() as session:
            session.execute(
                update(RelayLease)
                .where(RelayLease.name == LEASE_NAME, RelayLease.holder == self.name)
                .values(holder=None, expires_at=None)
            )

    # --- one round ------------------------------------------------------------------

    def run_once(self) -> int:
        """Publish, dispatch and deliver what is due; returns how much was done."""
        if not self.lead():
            return 0
        done = self.publish() + self.dispatch() + self.deliver()
        if time.monotonic() >= self._prune_at:
            self.prune()
        return done

    def prune(self) -> None:
        """Delete a few batches of what fell out of the retention window (see ``retention``)."""
        days = self.settings.retention_days
        if not days:
            self._prune_at = float("inf")
            return
        try:
            pruned = prune(
                self.db,
                before=utcnow() - timedelta(days=days),
                max_batches=PRUNE_BATCHES_PER_ROUND,
            )
        except Exception:
            log.exception("could not prune the outbox; trying again later")
            self._prune_at = time.monotonic() + PRUNE_EVERY / 12
            return
        self.stats.pruned_events += pruned.events
        self.stats.pruned_deliveries += pruned.deliveries
        if pruned.events or pruned.deliveries:
            log.info(
                "outbox pruned",
                events=pruned.events,
                deliveries=pruned.deliveries,
                retention_days=days,
                more=pruned.more,
            )
        # More left: the next round goes on; otherwise not before the next hour.
        self._prune_at = time.monotonic() + (0.0 if pruned.more else PRUNE_EVERY)

    def publish(self) -> int:
        """Send the oldest unpublished events to the broker; mark what it acknowledged."""
        if time.monotonic() < self._broker_retry_at:
            return 0
        with self.db.read() as session:
            events = list(
                session.execute(
                    select(OutboxEvent)
                    .where(OutboxEvent.published_at.is_(None))
                    .order_by(OutboxEvent.seq)
                    .limit(self.settings.batch)
                ).scalars()
            )
        if not events:
            return 0
        acknowledged = len(events)
        try:
            self.publisher.publish(events)
            self._broker_backoff = 0.0
        except PublishError as exc:
            acknowledged = exc.acknowledged
            self._broker_backoff = min(MAX_BROKER_BACKOFF, max(0.5, self._broker_backoff * 2))
            self._broker_retry_at = time.monotonic() + self._broker_backoff
            log.warning(
                "broker refused events; they stay in the outbox",
                broker=self.publisher.name,
                error=str(exc),
                acknowledged=acknowledged,
                retry_in_s=self._broker_backoff,
            )
        if acknowledged:
            done = [e.seq for e in events[:acknowledged]]
            with self.db.write() as session:
                session.execute(
                    update(OutboxEvent)
                    .where(OutboxEvent.seq.in_(done))
                    .values(published_at=utcnow())
                )
            self.stats.published += acknowledged
        return acknowledged

    def dispatch(self) -> int:
        """Give every new event a delivery row per matching webhook subscription."""
        now = utcnow()
        with self.db.write() as session:
            events = list(
                session.execute(
                    select(OutboxEvent)
                    .where(OutboxEvent.dispatched_at.is_(None))
                    .order_by(OutboxEvent.seq)
                    .limit(self.settings.batch)
                ).scalars()
            )
            if not events:
                return 0
            subscriptions = list(
                session.execute(
                    select(Subscription).where(Subscription.deleted_at.is_(None))
                ).scalars()
            )
            for event in events:
                for sub in subscriptions:
                    if matches(sub.types, event.type):
                        session.add(
                            Delivery(
                                id=new_id(),
                                subscription_id=sub.id,
                                event_seq=event.seq,
                                tenant_id=event.tenant_id,
                                status="pending",
                                attempts=0,
                                next_attempt_at=now,
                                created_at=now,
                            )
                        )
                event.dispatched_at = now
        self.stats.dispatched += len(events)
        return len(events)

    def deliver(self) -> int:
        """POST the due deliveries, oldest first, keeping each tenant's order per webhook."""
        now = utcnow()
        earlier = aliased(Delivery)
        # An earlier delivery of the same tenant to the same webhook that is still
        # backing off holds the later ones back (so order holds through retries).
        held_back = (
            select(earlier.id)
            .where(
                earlier.subscription_id == Delivery.subscription_id,
                earlier.tenant_id.is_not_distinct_from(Delivery.tenant_id),
                earlier.status == "pending",
                earlier.event_seq < Delivery.event_seq,
                earlier.next_attempt_at > now,
            )
            .exists()
        )
        with self.db.read() as session:
            rows = session.execute(
                select(Delivery, OutboxEvent, Subscription)
                .join(OutboxEvent, OutboxEvent.seq == Delivery.event_seq)
                .join(Subscription, Subscription.id == Delivery.subscription_id)
                .where(Delivery.status == "pending", Delivery.next_attempt_at <= now, ~held_back)
                .order_by(Delivery.event_seq)
                .limit(self.settings.batch)
            ).all()
        blocked: set[tuple[str, str | None]] = set()
        outcomes: list[dict[str, object]] = []
        for delivery, event, sub in rows:
            key = (sub.id, delivery.tenant_id)
            if key in blocked:  # an earlier one failed in this round
                continue
            outcome = self._attempt(delivery, event, sub)
            outcomes.append(outcome)
            if outcome["b_status"] != "delivered":
                blocked.add(key)
        if outcomes:
            # One transaction for the round; only rows still pending (a delete or a
            # redelivery meanwhile wins). A crash before it re-sends the round:
            # at least once, deduplicated on webhook-id.
            with self.db.write() as session:
                session.execute(_RECORD_ATTEMPT, outcomes)
        return len(outcomes)

    def _attempt(
        self, delivery: Delivery, event: OutboxEvent, sub: Subscription
    ) -> dict[str, object]:
        """POST one delivery; the values its row takes (with its ``id``)."""
        outcome = post(
            self._http,
            sub.url,
            secret=secret_for(self.key, sub.id),
            msg_id=event.id,
            timestamp=int(time.time()),
            body=encode(event),
        )
        now = utcnow()
        attempts = delivery.attempts + 1
        values: dict[str, object] = {
            "b_id": delivery.id,
            "b_status": "pending",
            "b_attempts": attempts,
            "b_last_status": outcome.status,
            "b_last_error": outcome.error,
            "b_delivered_at": None,
            "b_next_attempt_at": None,
        }
        if outcome.ok:
            values.update(b_status="delivered", b_delivered_at=now)
            self.stats.delivered += 1
        elif attempts >= self.settings.webhook_attempts:
            values.update(b_status="dead")
            self.stats.dead += 1
            log.warning(
                "webhook delivery dead after its last attempt",
                delivery_id=delivery.id,
                subscription_id=sub.id,
                event_id=event.id,
                error=outcome.error,
            )
        else:
            delay = min(
                self.settings.webhook_backoff_max_seconds,
                self.settings.webhook_backoff_seconds * 2 ** (attempts - 1),
            )
            if outcome.retry_after is not None:
                delay = max(
                    delay, min(outcome.retry_after, self.settings.webhook_backoff_max_seconds)
                )
            values["b_next_attempt_at"] = now + timedelta(seconds=delay)
            self.stats.failed_attempts += 1
        return values

    # --- the loop -------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def serve(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception:
                log.exception("relay loop error")
                busy = 0
            if not busy:
                self._wake.wait(self.settings.poll_seconds)
                self._wake.clear()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve, name="event-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.resign()
        except Exception:
            log.exception("could not hand over the relay lease")
        self._http.close()
        self.publisher.close()
