"""The publisher port's contract, run against every publisher that can run here.

NATS JetStream is the real server on 127.0.0.1:4222 (a run without it fails,
never skips). Kafka is librdkafka's built-in mock cluster: a Kafka protocol
implementation inside librdkafka that listens on real local ports, so the
publisher, and the consumer that reads back, talk to it over TCP like to a
broker (decision 0010 says what that does not prove).

Each test gets its own NATS stream and subject prefix, or its own mock cluster
and topic prefix, and reads back everything the broker holds for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import nats
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from tenantops.events import catalogue
from tenantops.events.envelope import CONTENT_TYPE, cloudevent
from tenantops.events.models import OutboxEvent
from tenantops.events.publishers.kafka import NO_TENANT_KEY, KafkaPublisher
from tenantops.events.publishers.nats import NatsPublisher
from tenantops.events.publishers.port import Publisher, PublishError
from tests.servers import free_port

NATS_URL = "nats://127.0.0.1:4222"
READ_WITHIN = 15.0  # seconds a broker may take to hand back what it holds
RETURNS_WITHIN = 30.0  # seconds a publish to a dead broker may take before we call it a hang

T = TypeVar("T")


# --- events -------------------------------------------------------------------------

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def state_event(seq: int, tenant: str, kind: catalogue.EventType) -> OutboxEvent:
    data = catalogue.TenantStateChanged(
        tenant_id=tenant,
        tenant_name=f"acme-{tenant[:4]}",
        actor="alice@example.com",
        from_state=None,
        to_state=kind.name.removeprefix("tenant."),
        lifecycle_event=None,
        tier="standard",
        region="eu-west-1",
    )
    return OutboxEvent(
        seq=seq,
        id=str(uuid.uuid4()),
        type=kind.type,
        topic=kind.topic,
        tenant_id=tenant,
        time=T0 + timedelta(seconds=seq),
        data=data.model_dump(mode="json"),
    )


def access_event(seq: int) -> OutboxEvent:
    """An event about no tenant (a break-glass grant outside any tenant)."""
    data = catalogue.AccessChanged(actor="system:engine", grant_id="g-1", subject="bob")
    return OutboxEvent(
        seq=seq,
        id=str(uuid.uuid4()),
        type=catalogue.ACCESS_GRANTED.type,
        topic=catalogue.ACCESS_GRANTED.topic,
        tenant_id=None,
        time=T0 + timedelta(seconds=seq),
        data=data.model_dump(mode="json"),
    )


def history() -> list[OutboxEvent]:
    """Three tenants' lives interleaved, over three topics, plus two events about no tenant."""
    tenants = [str(uuid.uuid4()) for _ in range(3)]
    kinds = [
        catalogue.TENANT_REQUESTED,
        catalogue.TENANT_APPROVED,
        catalogue.TENANT_PROVISIONING,
        catalogue.TENANT_ACTIVE,
        catalogue.TENANT_SUSPENDED,  # on tenant.security
        catalogue.TENANT_ACTIVE,
    ]
    events: list[OutboxEvent] = []
    for kind in kinds:
        for tenant in tenants:
            events.append(state_event(len(events) + 1, tenant, kind))
        if kind is catalogue.TENANT_APPROVED or kind is catalogue.TENANT_SUSPENDED:
            events.append(access_event(len(events) + 1))
    return events


# --- what a broker hands back, and the harness per broker ---------------------------


@dataclass
class Received:
    """One message as a consumer reads it, in the broker's order for its stream/partition."""

    destination: str  # NATS subject or Kafka topic
    msg_id: str | None  # Nats-Msg-Id / ce_id header
    content_type: str | None
    body: dict[str, Any]


class Broker(Protocol):
    name: str
    dedupes_by_id: bool

    def publisher(self, *, timeout: float = 5.0) -> Publisher: ...

    def unreachable(self, *, timeout: float) -> Publisher: ...

    def destination(self, topic: str) -> str: ...

    def received(self) -> list[Received]: ...

    def retire(self, publisher: Publisher) -> None: ...


@dataclass
class NatsBroker:
    """A fresh stream and subject prefix on the real NATS server; deleted afterwards."""

    name = "nats"
    dedupes_by_id = True
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    opened: list[NatsPublisher] = field(default_factory=list)

    @property
    def stream(self) -> str:
        return f"TEST_PUBLISHERS_{self.suffix}"

    def destination(self, topic: str) -> str:
        return f"test.{self.suffix}.{topic}"

    def publisher(self, *, timeout: float = 5.0) -> Publisher:
        pub = NatsPublisher(
            NATS_URL,
            stream=self.stream,
            subject_prefix=self.destination(""),
            timeout=timeout,
        )
        self.opened.append(pub)
        return pub

    def unreachable(self, *, timeout: float) -> Publisher:
        pub = NatsPublisher(
            f"nats://127.0.0.1:{free_port()}",
            stream=self.stream,
            subject_prefix=self.destination(""),
            timeout=timeout,
        )
        self.opened.append(pub)
        return pub

    def received(self) -> list[Received]:
        async def read() -> list[Received]:
            nc = await nats.connect(NATS_URL, connect_timeout=5, allow_reconnect=False)
            try:
                js = nc.jetstream(timeout=5)
                state = (await js.stream_info(self.stream)).state
                out = []
                for seq in range(state.first_seq, state.last_seq + 1):
                    msg = await js.get_msg(self.stream, seq)
                    headers = msg.headers or {}
                    out.append(
                        Received(
                            destination=msg.subject or "",
                            msg_id=headers.get("Nats-Msg-Id"),
                            content_type=headers.get("Content-Type"),
                            body=json.loads(msg.data or b"null"),
                        )
                    )
                return out if state.messages else []
            finally:
                await nc.close()

        return asyncio.run(asyncio.wait_for(read(), READ_WITHIN))

    def retire(self, publisher: Publisher) -> None:
        """Close ``publisher`` now (as a relay that stops); teardown closes the others."""
        self.opened.remove(publisher)  # type: ignore[arg-type]
        publisher.close()

    def close(self) -> None:
        for pub in self.opened:
            pub.close()

        async def drop() -> None:
            nc = await nats.connect(NATS_URL, connect_timeout=5, allow_reconnect=False)
            try:
                await nc.jetstream(timeout=5).delete_stream(self.stream)
            except nats.js.errors.NotFoundError:
                pass  # nothing ever connected and created it
            finally:
                await nc.close()

        asyncio.run(drop())


# The holder's own connection chatter is of no interest to these tests.
MOCK_CLUSTER_LOG = logging.getLogger("tests.kafka.mock-cluster")
MOCK_CLUSTER_LOG.propagate = False
MOCK_CLUSTER_LOG.addHandler(logging.NullHandler())


def mock_cluster(**settings: object) -> tuple[Producer, str]:
    """A librdkafka mock cluster (3 brokers) and its bootstrap address.

    The cluster lives inside the client that creates it, for as long as that
    client. Its brokers listen on local ports; the metadata the cluster returns
    names them (librdkafka also logs "Mock cluster enabled … replaced with
    <addresses>"), so other clients reach it as any bootstrap address.
    """
    holder = Producer({"test.mock.num.brokers": 3, **settings}, logger=MOCK_CLUSTER_LOG)
    metadata = holder.list_topics(timeout=10)
    bootstrap = ",".join(f"{b.host}:{b.port}" for b in metadata.brokers.values())
    return holder, bootstrap


@dataclass
class KafkaBroker:
    """A fresh mock cluster and topic prefix; publishers are closed before the cluster."""

    name = "kafka"
    dedupes_by_id = False
    cluster_settings: dict[str, object] = field(default_factory=dict)
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    opened: list[KafkaPublisher] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.holder, self.bootstrap = mock_cluster(**self.cluster_settings)

    def destination(self, topic: str) -> str:
        return f"test.{self.suffix}.{topic}"

    def kafka_publisher(self, *, timeout: float = 5.0, **options: str) -> KafkaPublisher:
        pub = KafkaPublisher(
            self.bootstrap, options=options, topic_prefix=self.destination(""), timeout=timeout
        )
        self.opened.append(pub)
        return pub

    def publisher(self, *, timeout: float = 5.0) -> Publisher:
        return self.kafka_publisher(timeout=timeout)

    def unreachable(self, *, timeout: float) -> Publisher:
        pub = KafkaPublisher(
            f"127.0.0.1:{free_port()}",
            options={"reconnect.backoff.max.ms": "200"},
            topic_prefix=self.destination(""),
            timeout=timeout,
        )
        self.opened.append(pub)
        return pub

    def records(self) -> list[tuple[str, bytes | None, dict[str, bytes], dict[str, Any]]]:
        """Every record in this test's topics: (topic, key, headers, value), by partition."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"test-{self.suffix}",
                "enable.auto.commit": False,
            }
        )
        try:
            topics = consumer.list_topics(timeout=10).topics
            assigned: list[TopicPartition] = []
            expected = 0
            for name, meta in topics.items():
                if not name.startswith(self.destination("")):
                    continue
                for p in meta.partitions:
                    low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                    if high > low:
                        expected += high - low
                        assigned.append(TopicPartition(name, p, OFFSET_BEGINNING))
            consumer.assign(assigned)
            got: list[tuple[str, bytes | None, dict[str, bytes], dict[str, Any]]] = []
            polls = int(READ_WITHIN / 0.2)
            while len(got) < expected and polls:
                polls -= 1
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                assert msg.error() is None, msg.error()
                headers = dict(msg.headers() or [])
                got.append((msg.topic() or "", msg.key(), headers, json.loads(msg.value() or b"")))
            assert len(got) == expected, f"read {len(got)} of {expected} records"
            return got
        finally:
            consumer.close()

    def received(self) -> list[Received]:
        def text(value: bytes | None) -> str | None:
            return None if value is None else value.decode()

        return [
            Received(topic, text(h.get("ce_id")), text(h.get("content-type")), body)
            for topic, _key, h, body in self.records()
        ]

    def retire(self, publisher: Publisher) -> None:
        """Close ``publisher`` now (as a relay that stops); teardown closes the others."""
        self.opened.remove(publisher)  # type: ignore[arg-type]
        publisher.close()

    def close(self) -> None:
        for pub in self.opened:
            pub.close()
        self.holder.close()


def nats_broker() -> Iterator[NatsBroker]:
    async def ping() -> None:
        nc = await nats.connect(NATS_URL, connect_timeout=3, allow_reconnect=False)
        try:
            await nc.jetstream(timeout=3).account_info()
        finally:
            await nc.close()

    try:
        asyncio.run(ping())
    except Exception as exc:
        pytest.fail(
            f"NATS with JetStream is needed on {NATS_URL} for these tests: {exc!r}",
            pytrace=False,
        )
    broker = NatsBroker()
    try:
        yield broker
    finally:
        broker.close()


def kafka_broker() -> Iterator[KafkaBroker]:
    broker = KafkaBroker()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(params=["nats", "kafka"])
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    yield from (nats_broker() if request.param == "nats" else kafka_broker())


def returns(work: Callable[[], T]) -> T:
    """``work()``'s result or exception; fails the test if it is still running after a bound."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(("ok", work()))
        except BaseException as exc:
            outcome.append(("raised", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(RETURNS_WITHIN)
    if not outcome:
        pytest.fail(f"still running after {RETURNS_WITHIN:g} s: it hangs")
    kind, value = outcome[0]
    if kind == "raised":
        raise value
    return value  # type: ignore[no-any-return]


def by_stream(
    received: Sequence[Received], events: Sequence[OutboxEvent]
) -> dict[tuple[str | None, str], list[str]]:
    """Event ids per (tenant, topic): the unit in which every broker keeps order."""
    tenant_of = {e.id: e.tenant_id for e in events}
    out: dict[tuple[str | None, str], list[str]] = {}
    for r in received:
        out.setdefault((tenant_of[r.body["id"]], r.body["topic"]), []).append(r.body["id"])
    return out


def first_seen(received: Sequence[Received]) -> list[Received]:
    """What a consumer that dedupes by message id keeps."""
    seen: set[str] = set()
    kept = []
    for r in received:
        assert r.msg_id is not None
        if r.msg_id not in seen:
            seen.add(r.msg_id)
            kept.append(r)
    return kept


# --- the contract -------------------------------------------------------------------


def test_events_arrive_once_and_in_publish_order_per_tenant(broker: Broker) -> None:
    events = history()
    publisher = broker.publisher()
    half = len(events) // 2
    publisher.publish(events[:half])
    publisher.publish(events[half:])

    received = broker.received()

    assert sorted(r.body["id"] for r in received) == sorted(e.id for e in events)
    assert by_stream(received, events) == by_stream(
        [Received("", e.id, None, cloudevent(e)) for e in events], events
    )


def test_each_message_is_the_cloudevent_with_its_stable_id_and_type(broker: Broker) -> None:
    events = history()
    broker.publisher().publish(events)

    received = {r.body["id"]: r for r in broker.received()}

    for event in events:
        message = received[event.id]
        assert message.body == cloudevent(event)
        assert message.body["type"] == event.type
        assert message.body.get("subject") == event.tenant_id
        assert message.msg_id == event.id
        assert message.content_type == CONTENT_TYPE
        assert message.destination == broker.destination(event.topic)


def test_check_answers(broker: Broker) -> None:
    publisher = broker.publisher()
    publisher.publish(history()[:2])

    line = publisher.check()

    assert isinstance(line, str)
    assert line


def test_publishing_to_an_unreachable_broker_fails_with_nothing_acknowledged(
    broker: Broker,
) -> None:
    publisher = broker.unreachable(timeout=1.0)
    events = history()[:3]

    with pytest.raises(PublishError) as failed:
        returns(lambda: publisher.publish(events))

    assert failed.value.acknowledged == 0


def test_check_of_an_unreachable_broker_raises(broker: Broker) -> None:
    publisher = broker.unreachable(timeout=1.0)

    with pytest.raises(Exception):  # noqa: B017, PT011 - each broker's own error is fine here
        returns(publisher.check)


def test_a_republished_event_reaches_a_deduping_consumer_once(broker: Broker) -> None:
    """The relay sends again what it could not mark published, with the same ids."""
    events = history()
    first = broker.publisher()
    first.publish(events)
    broker.retire(first)
    broker.publisher().publish(events[4:])  # a relay restarted before marking these

    received = broker.received()

    if broker.dedupes_by_id:
        assert len(received) == len(events)  # dropped by the broker (Nats-Msg-Id)
    else:
        assert len(received) == len(events) + len(events[4:])  # both copies kept
    copies: dict[str, list[dict[str, Any]]] = {}
    for r in received:
        copies.setdefault(r.body["id"], []).append(r.body)
    assert all(c == [c[0]] * len(c) for c in copies.values()), "copies differ"
    kept = first_seen(received)
    assert len(kept) == len(events)
    assert by_stream(kept, events) == by_stream(
        [Received("", e.id, None, cloudevent(e)) for e in events], events
    )


# --- Kafka only -----------------------------------------------------------------------


@pytest.fixture
def kafka() -> Iterator[KafkaBroker]:
    yield from kafka_broker()


def test_kafka_keys_records_by_tenant_and_sets_cloudevents_headers(kafka: KafkaBroker) -> None:
    events = history()
    kafka.publisher().publish(events)

    records = {value["id"]: (key, headers) for _t, key, headers, value in kafka.records()}

    for event in events:
        key, headers = records[event.id]
        assert headers["content-type"] == CONTENT_TYPE.encode()
        assert headers["ce_id"] == event.id.encode()
        assert headers["ce_type"] == event.type.encode()
        if event.tenant_id is None:
            assert key == NO_TENANT_KEY
            assert "ce_subject" not in headers
        else:
            assert key == event.tenant_id.encode()
            assert headers["ce_subject"] == event.tenant_id.encode()


def test_kafka_retry_while_the_first_copy_is_in_flight_produces_no_duplicate() -> None:
    """A slow broker: the relay's retries wait for the copy already sent instead of a new one."""
    slow = KafkaBroker(cluster_settings={"test.mock.broker.rtt": 200})
    try:
        publisher = slow.kafka_publisher(timeout=0.1, **{"message.timeout.ms": "60000"})
        events = history()
        pending = list(events)
        failures = 0
        for _attempt in range(200):  # as the relay does: resend what was not acknowledged
            try:
                publisher.publish(pending)
            except PublishError as exc:
                failures += 1
                pending = pending[exc.acknowledged :]
            else:
                break

        assert failures > 0, "the broker was never slower than the publish timeout"
        received = slow.received()
        assert sorted(r.body["id"] for r in received) == sorted(e.id for e in events)
        assert by_stream(received, events) == by_stream(
            [Received("", e.id, None, cloudevent(e)) for e in events], events
        )
    finally:
        slow.close()


def test_kafka_never_shows_secret_settings(capfd: pytest.CaptureFixture[str]) -> None:
    secret = "hunter2-" + uuid.uuid4().hex
    publisher = KafkaPublisher(
        f"127.0.0.1:{free_port()}",
        options={
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN",
            "sasl.username": "relay",
            "sasl.password": secret,
        },
        timeout=0.5,
    )
    try:
        with pytest.raises(PublishError) as failed:
            returns(lambda: publisher.publish(history()[:1]))
        with pytest.raises(PublishError) as unchecked:
            returns(publisher.check)
        shown = [repr(publisher), str(failed.value), str(unchecked.value)]
    finally:
        publisher.close()
    out, err = capfd.readouterr()

    assert "sasl.password" in shown[0]
    assert secret not in "\n".join([*shown, out, err])
