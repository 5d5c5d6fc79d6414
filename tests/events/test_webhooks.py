"""Webhooks end to end: subscribe, signed deliveries in order, retries, dead letters, redelivery."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tenantops.config import EventsSettings, Settings
from tenantops.db import Database
from tenantops.events.publishers.port import NoBroker
from tenantops.events.relay import Relay
from tenantops.events.webhooks import signing_key, verify
from tests import flows
from tests.conftest import Actors

SUBS = "/api/v1/events/subscriptions"


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1: records what it got; fails while ``failing`` > 0."""

    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    failing: int = 0
    status_when_failing: int = 503


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            if state.failing > 0:
                state.failing -= 1
                self.send_response(state.status_when_failing)
                self.end_headers()
                self.wfile.write(b"not now")
                return
            state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_port}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def relay_for(db: Database, settings: Settings, **overrides: Any) -> Relay:
    events = EventsSettings(**{"webhook_backoff_seconds": 0, **overrides})
    return Relay(db, NoBroker(), events, signing_key(settings), name="test-relay")


def drain(relay: Relay, rounds: int = 50) -> None:
    for _ in range(rounds):
        if relay.run_once() == 0:
            return


def test_a_subscriber_gets_signed_cloudevents_in_order(
    client: TestClient, db: Database, settings: Settings, actors: Actors, receiver: Receiver
) -> None:
    created = flows.ok(
        client.post(
            SUBS,
            json={"url": receiver.url, "types": ["io.tenantops.tenant.*"]},
            headers=actors.admin,
        ),
        201,
    )
    secret = created["secret"]
    assert secret.startswith("whsec_")
    listed = flows.ok(client.get(SUBS, headers=actors.admin))["items"]
    assert [s["id"] for s in listed] == [created["id"]]
    assert "secret" not in listed[0]  # shown once, never again

    tenant = flows.tenant_in(client, actors, flows.S.ACTIVE)
    drain(relay_for(db, settings))

    types = []
    for headers, body in receiver.received:
        assert verify(secret, headers, body)
        assert headers["content-type"] == "application/cloudevents+json"
        event = json.loads(body)
        assert headers["webhook-id"] == event["id"]
        assert event["subject"] == tenant["id"]
        types.append(event["type"].removeprefix("io.tenantops."))
    assert types == [
        "tenant.requested",
        "tenant.approval.recorded",
        "tenant.approval.recorded",
        "tenant.approved",
        "tenant.provisioning",
        "tenant.verifying",
        "tenant.active",
    ]
    tampered = receiver.received[0][1].replace(b"requested", b"approved")
    assert not verify(secret, receiver.received[0][0], tampered)


def test_failed_deliveries_retry_then_go_dead_and_can_be_redelivered(
    client: TestClient, db: Database, settings: Settings, actors: Actors, receiver: Receiver
) -> None:
    flows.ok(
        client.post(
            SUBS,
            json={"url": receiver.url, "types": ["io.tenantops.tenant.requested"]},
            headers=actors.admin,
        ),
        201,
    )
    tenant = flows.request_tenant(client, actors.am)
    receiver.failing = 10
    relay = relay_for(db, settings, webhook_attempts=3)
    drain(relay)
    assert receiver.received == []
    dead = flows.ok(
        client.get("/api/v1/events/deliveries", params={"status": "dead"}, headers=actors.ops)
    )["items"]
    assert len(dead) == 1
    assert dead[0]["attempts"] == 3
    assert dead[0]["last_status"] == 503
    assert dead[0]["event_type"] == "io.tenantops.tenant.requested"
    assert relay.stats.dead == 1

    receiver.failing = 0
    again = flows.ok(
        client.post(f"/api/v1/events/deliveries/{dead[0]['id']}/redeliver", headers=actors.ops)
    )
    assert again["status"] == "pending"
    drain(relay)
    [(headers, body)] = receiver.received
    assert json.loads(body)["subject"] == tenant["id"]
    assert headers["webhook-id"] == dead[0]["event_id"]  # the same event id as before
    delivered = flows.ok(
        client.get("/api/v1/events/deliveries", params={"status": "delivered"}, headers=actors.ops)
    )["items"]
    assert [d["id"] for d in delivered] == [dead[0]["id"]]
    trail = flows.ok(client.get("/api/v1/audit", headers=actors.auditor))["items"]
    assert "events.delivery.redelivered" in [e["action"] for e in trail]


def test_a_pending_earlier_event_holds_back_the_later_ones_of_its_tenant(
    client: TestClient, db: Database, settings: Settings, actors: Actors, receiver: Receiver
) -> None:
    flows.ok(
        client.post(SUBS, json={"url": receiver.url, "types": ["*"]}, headers=actors.admin), 201
    )
    tenant = flows.request_tenant(client, actors.am)
    flows.approve(client, tenant["id"], "governance", actors.gov)
    relay = relay_for(db, settings, webhook_backoff_seconds=3600)
    receiver.failing = 1
    drain(relay)
    # The first failed and waits an hour; the second must not overtake it.
    assert receiver.received == []
    pending = flows.ok(
        client.get("/api/v1/events/deliveries", params={"status": "pending"}, headers=actors.ops)
    )["items"]
    assert len(pending) == 2


def test_subscriptions_are_validated_admin_only_and_deletion_cancels_pending(
    client: TestClient, db: Database, actors: Actors, receiver: Receiver
) -> None:
    bad = flows.problem(
        client.post(
            SUBS, json={"url": receiver.url, "types": ["io.tenantops.nope"]}, headers=actors.admin
        ),
        422,
    )
    assert "matches no event type" in bad["detail"]
    flows.problem(
        client.post(SUBS, json={"url": "ftp://x", "types": ["*"]}, headers=actors.admin), 422
    )
    flows.problem(
        client.post(SUBS, json={"url": receiver.url, "types": ["*"]}, headers=actors.ops), 403
    )
    sub = flows.ok(
        client.post(SUBS, json={"url": receiver.url, "types": ["*"]}, headers=actors.admin), 201
    )
    flows.request_tenant(client, actors.am)
    relay = Relay(db, NoBroker(), EventsSettings(), b"k", name="r")
    relay.dispatch()
    assert client.delete(f"{SUBS}/{sub['id']}", headers=actors.admin).status_code == 204
    flows.problem(client.delete(f"{SUBS}/{sub['id']}", headers=actors.admin), 404)
    cancelled = flows.ok(
        client.get("/api/v1/events/deliveries", params={"status": "cancelled"}, headers=actors.ops)
    )["items"]
    assert len(cancelled) == 1
    assert relay.deliver() == 0
    assert receiver.received == []


def test_one_relay_leads_at_a_time(db: Database) -> None:
    first = Relay(db, NoBroker(), EventsSettings(lease_seconds=60), b"k", name="first")
    second = Relay(db, NoBroker(), EventsSettings(lease_seconds=60), b"k", name="second")
    assert first.lead()
    assert not second.lead()
    first.resign()
    assert second.lead()
    assert not first.lead()


def test_two_relays_running_at_once_deliver_each_event_once(
    client: TestClient, db: Database, settings: Settings, actors: Actors, receiver: Receiver
) -> None:
    flows.ok(
        client.post(SUBS, json={"url": receiver.url, "types": ["*"]}, headers=actors.admin), 201
    )
    tenants = [flows.request_tenant(client, actors.am) for _ in range(5)]
    fast = EventsSettings(poll_seconds=0.01, lease_seconds=30)
    relays = [
        Relay(db, NoBroker(), fast, signing_key(settings), name=f"relay-{i}") for i in range(2)
    ]
    for r in relays:
        r.start()
    try:
        deadline = time.monotonic() + 30
        while len(receiver.received) < len(tenants) and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(3):  # let any second relay have its chance to repeat one
            for r in relays:
                r.wake()
            time.sleep(0.1)
    finally:
        for r in relays:
            r.stop()
    ids = [headers["webhook-id"] for headers, _ in receiver.received]
    assert len(ids) == len(tenants)
    assert len(set(ids)) == len(ids)
    assert sum(r.stats.delivered for r in relays) == len(tenants)
    assert min(r.stats.delivered for r in relays) == 0  # one led, the other stood by


def test_a_webhook_that_keeps_failing_does_not_starve_the_others(
    client: TestClient, db: Database, settings: Settings, actors: Actors, receiver: Receiver
) -> None:
    from tests.servers import free_port

    down = f"http://127.0.0.1:{free_port()}/hook"
    for url in (down, receiver.url):
        flows.ok(client.post(SUBS, json={"url": url, "types": ["*"]}, headers=actors.admin), 201)
    relay = relay_for(db, settings, batch=2, webhook_backoff_seconds=3600)
    for _ in range(3):
        flows.request_tenant(client, actors.am)
        drain(relay)
    # The dead-slow webhook now has more deliveries backing off than one round reads.
    late = flows.request_tenant(client, actors.am)
    drain(relay)
    subjects = [json.loads(body)["subject"] for _, body in receiver.received]
    assert len(subjects) == 4
    assert subjects[-1] == late["id"]
