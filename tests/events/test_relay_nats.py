"""The relay against a real NATS JetStream server: in order, once, and through an outage."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tenantops.app import create_app
from tenantops.config import EventsSettings, Settings, WorkerSettings
from tenantops.db import Database
from tenantops.events.models import OutboxEvent
from tenantops.events.relay import Relay
from tenantops.wiring import build_relay
from tests import flows
from tests.conftest import Actors
from tests.servers import NatsServer

STREAM = "TENANTOPS"


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "jetstream")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nats_settings(tmp_path: Path, nats_server: NatsServer) -> Settings:
    return Settings(
        data_dir=tmp_path,
        log_json=False,
        worker=WorkerSettings(in_process=False),
        events=EventsSettings(
            broker="nats", nats_url=nats_server.url, relay=False, publish_timeout_seconds=2
        ),
    )


@pytest.fixture
def nats_client(db: Database, nats_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(nats_settings, db=db), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def relay(db: Database, nats_settings: Settings) -> Iterator[Relay]:
    r = build_relay(nats_settings, db)
    yield r
    r.stop()


def stream_messages(url: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """Every message of the stream, in stream order: (headers, CloudEvent)."""

    async def read() -> list[tuple[dict[str, str], dict[str, Any]]]:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            info = await js.stream_info(STREAM)
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(STREAM, seq)
                out.append((dict(msg.headers or {}), json.loads(msg.data or b"{}")))
            return out
        finally:
            await nc.close()

    return asyncio.run(read())


def outbox(db: Database) -> list[OutboxEvent]:
    with db.read() as session:
        return list(session.execute(select(OutboxEvent).order_by(OutboxEvent.seq)).scalars())


def publish_all(relay: Relay, db: Database, within: float = 30) -> None:
    """Run the relay until the outbox is published (bounded; broker retries back off)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        relay.run_once()
        if all(e.published_at is not None for e in outbox(db)):
            return
        time.sleep(0.1)
    raise AssertionError("the relay did not publish the outbox in time")


def test_events_reach_jetstream_in_order_with_their_ids(
    nats_client: TestClient, db: Database, actors: Actors, relay: Relay, nats_server: NatsServer
) -> None:
    first = flows.tenant_in(nats_client, actors, flows.S.ACTIVE)
    second = flows.request_tenant(nats_client, actors.am)
    publish_all(relay, db)

    messages = stream_messages(nats_server.url)
    assert [m["id"] for _, m in messages] == [e.id for e in outbox(db)]
    for headers, event in messages:
        assert headers["Nats-Msg-Id"] == event["id"]
        assert event["specversion"] == "1.0"
        assert event["source"] == "/tenantops"
    by_tenant = [m["data"].get("to_state") for _, m in messages if m["subject"] == first["id"]]
    assert [s for s in by_tenant if s] == [
        "requested",
        "approved",
        "provisioning",
        "verifying",
        "active",
    ]
    assert messages[-1][1]["subject"] == second["id"]
    topics = {m["topic"] for _, m in messages}
    assert topics == {"tenant.lifecycle", "tenant.compliance"}


def test_an_outage_keeps_events_in_the_outbox_and_delivers_them_once_back(
    nats_client: TestClient,
    db: Database,
    actors: Actors,
    relay: Relay,
    nats_server: NatsServer,
) -> None:
    flows.request_tenant(nats_client, actors.am)
    publish_all(relay, db)

    nats_server.stop()
    during = flows.request_tenant(nats_client, actors.am)  # the API keeps working
    relay.run_once()
    assert [e.published_at for e in outbox(db) if e.tenant_id == during["id"]] == [None]
    metrics = nats_client.get("/metrics").text
    assert 'tenantops_events_backlog{stage="unpublished"} 1.0' in metrics

    nats_server.start()
    publish_all(relay, db)
    assert 'tenantops_events_backlog{stage="unpublished"} 0.0' in nats_client.get("/metrics").text
    ids = [m["id"] for _, m in stream_messages(nats_server.url)]
    assert ids == [e.id for e in outbox(db)]  # every event, once, in order
