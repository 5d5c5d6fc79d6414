"""Outbox relay throughput and commit-to-delivery latency, to NATS JetStream and to a webhook.

For one store (a fresh SQLite file or PostgreSQL database) and one target:

- ``nats``: the NATS server on 127.0.0.1:4222 (JetStream), a stream and
  subject prefix of this run's own (deleted after); a core subscription on the
  same server receives what the relay published;
- ``webhook``: one subscription to a local HTTP receiver on 127.0.0.1 that
  answers 204 and records what arrived.

Two measurements:

1. **drain**: ``--events`` events are committed first (one transaction each,
   relay stopped), then the relay starts; events/s from its start to the last
   event received;
2. **latency**: the relay runs (woken after each commit, as the API does) while
   ``--rate`` events/s are committed for ``--seconds``; p50/p99 of
   received-time minus commit-time per event (one host clock).

    .venv/bin/python bench/bench_events.py --store sqlite   --target nats    --events 5000
    .venv/bin/python bench/bench_events.py --store postgres --target nats    --events 5000
    .venv/bin/python bench/bench_events.py --store sqlite   --target webhook --events 2000
    .venv/bin/python bench/bench_events.py --store postgres --target webhook --events 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench_engine import fresh_store, sqlalchemy_url

from tenantops.config import EventsSettings
from tenantops.db import Database
from tenantops.events import catalogue, outbox
from tenantops.events.asyncapi import example_data
from tenantops.events.models import Subscription
from tenantops.events.publishers.nats import NatsPublisher
from tenantops.events.publishers.port import NoBroker, Publisher
from tenantops.events.relay import Relay
from tenantops.kit.clock import utcnow
from tenantops.migrations import upgrade

NATS_URL = "nats://127.0.0.1:4222"
TENANTS = 100


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class Arrivals:
    """Event id -> when it arrived (first time only)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.lock = threading.Lock()
        self.duplicates = 0

    def seen(self, event_id: str) -> None:
        now = time.time()
        with self.lock:
            if event_id in self.at:
                self.duplicates += 1
            else:
                self.at[event_id] = now


def webhook_receiver(arrivals: Arrivals) -> tuple[str, Callable[[], None]]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            arrivals.seen(self.headers["webhook-id"])
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return f"http://127.0.0.1:{server.server_port}/hook", stop


def nats_receiver(arrivals: Arrivals, prefix: str) -> Callable[[], None]:
    """A core NATS subscription on ``prefix.>`` in a thread of its own."""
    import nats

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def start() -> None:
        nc = await nats.connect(NATS_URL)

        async def on_msg(msg: Any) -> None:
            arrivals.seen(msg.headers["Nats-Msg-Id"])

        await nc.subscribe(prefix + ">", cb=on_msg)
        holder["nc"] = nc
        ready.set()

    threading.Thread(target=loop.run_forever, daemon=True).start()
    asyncio.run_coroutine_threadsafe(start(), loop)
    ready.wait(10)

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(holder["nc"].close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)

    return stop


def delete_stream(stream: str) -> None:
    import nats

    async def go() -> None:
        nc = await nats.connect(NATS_URL)
        try:
            await nc.jetstream().delete_stream(stream)
        finally:
            await nc.close()

    asyncio.run(go())


def commit_one(db: Database, i: int) -> tuple[str, float]:
    """One event in its own transaction; its id and the time the commit returned."""
    data = example_data(catalogue.TENANT_ACTIVE).model_copy(
        update={"tenant_id": f"tenant-{i % TENANTS:03d}", "tenant_name": f"t{i % TENANTS}"}
    )
    with db.write() as session:
        event = outbox.emit(session, catalogue.TENANT_ACTIVE, data)
        event_id = event.id
    return event_id, time.time()


def wait_for(arrivals: Arrivals, ids: list[str], limit: float) -> float:
    deadline = time.monotonic() + limit
    wanted = set(ids)
    while time.monotonic() < deadline:
        with arrivals.lock:
            if wanted <= arrivals.at.keys():
                return max(arrivals.at[i] for i in ids)
        time.sleep(0.01)
    with arrivals.lock:
        got = len(wanted & arrivals.at.keys())
    raise SystemExit(f"only {got} of {len(ids)} events arrived within {limit:g}s")


def run(store: str, target: str, events: int, rate: float, seconds: float) -> dict[str, Any]:
    logging.getLogger().setLevel(logging.WARNING)
    url, drop = fresh_store(store, "events")
    db = Database(sqlalchemy_url(url))
    upgrade(db.engine)
    arrivals = Arrivals()
    run_id = uuid.uuid4().hex[:8]
    stream, prefix = f"BENCH_{run_id}", f"bench{run_id}."
    stops: list[Callable[[], None]] = []
    publisher: Publisher
    if target == "nats":
        stops.append(nats_receiver(arrivals, prefix))
        publisher = NatsPublisher(NATS_URL, stream=stream, subject_prefix=prefix)
    else:
        hook, stop = webhook_receiver(arrivals)
        stops.append(stop)
        publisher = NoBroker()
        with db.write() as session:
            session.add(
                Subscription(
                    id=str(uuid.uuid4()),
                    url=hook,
                    types=["*"],
                    description="bench",
                    created_by="bench",
                    created_at=utcnow(),
                )
            )
    settings = EventsSettings(poll_seconds=0.05, batch=500)
    relay = Relay(db, publisher, settings, b"bench-key", name="bench")
    try:
        # 1. drain a backlog
        ids = [commit_one(db, i)[0] for i in range(events)]
        started = time.time()
        relay.start()
        last = wait_for(arrivals, ids, 600)
        drain_s = last - started
        time.sleep(1)  # the relay records the drain's last round; latency starts after
        # 2. latency at a steady rate
        committed: dict[str, float] = {}
        interval = 1 / rate
        next_at = time.monotonic()
        for i in range(int(rate * seconds)):
            event_id, at = commit_one(db, events + i)
            committed[event_id] = at
            relay.wake()
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        wait_for(arrivals, list(committed), 120)
        lat = [(arrivals.at[i] - at) * 1000 for i, at in committed.items()]
        return {
            "store": store,
            "target": target,
            "drain_events": events,
            "drain_seconds": drain_s,
            "drain_events_per_s": events / drain_s,
            "latency_rate": rate,
            "latency_samples": len(lat),
            "latency_p50_ms": statistics.median(lat),
            "latency_p99_ms": pct(lat, 99),
            "latency_max_ms": max(lat),
            "duplicates": arrivals.duplicates,
        }
    finally:
        relay.stop()
        for stop in stops:
            stop()
        if target == "nats":
            delete_stream(stream)
        db.dispose()
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--target", choices=["nats", "webhook"], default="nats")
    parser.add_argument("--events", type=int, default=5000, help="backlog to drain")
    parser.add_argument("--rate", type=float, default=100, help="events/s for the latency run")
    parser.add_argument("--seconds", type=float, default=10, help="length of the latency run")
    args = parser.parse_args()
    result = run(args.store, args.target, args.events, args.rate, args.seconds)
    print(
        f"| {result['store']} | {result['target']} | {result['drain_events_per_s']:,.0f} "
        f"| {result['latency_rate']:g}/s | {result['latency_p50_ms']:.1f} ms "
        f"| {result['latency_p99_ms']:.1f} ms | {result['duplicates']} |"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
