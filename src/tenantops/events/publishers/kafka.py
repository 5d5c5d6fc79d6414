"""Kafka: one topic per event topic, keyed by tenant, through librdkafka's idempotent producer.

Each event is one record in CloudEvents' Kafka protocol binding, structured
mode: the value is the JSON CloudEvent, ``content-type`` says so, and the
``ce_id``/``ce_type``/``ce_subject`` headers let a consumer route or dedupe
without parsing the value.

The key is the tenant id, so a tenant's events on a topic land on one
partition in the order the relay sent them (across topics, the CloudEvents
``sequence`` attribute orders them). Events about no tenant share the key
``-``: they too stay in order, on one partition (there are few of them).

Duplicates: the idempotent producer drops the repeats of its own retries
within one producer session, and an event the relay sends again while its
first copy is still queued or in flight in this producer is not produced a
second time (``publish`` waits for the first copy instead). Across sessions —
a relay restarted, or an acknowledgement lost — Kafka keeps both copies:
consumers dedupe by ``ce_id``, which is the outbox event id on every copy.

Topics are not created here: a cluster that does not auto-create them needs
them made by ops; ``check()`` names the missing ones. Tested against
librdkafka's mock cluster (decision 0010).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from tenantops.events.catalogue import TOPICS
from tenantops.events.envelope import CONTENT_TYPE, encode
from tenantops.events.models import OutboxEvent
from tenantops.events.publishers.port import PublishError

log = structlog.get_logger("tenantops.events.kafka")

NO_TENANT_KEY = b"-"

# librdkafka settings whose values must never reach a log line, an error or a repr.
_SECRET_MARKERS = ("password", "secret", "sasl.oauthbearer.config", "ssl.key.pem", "token")


def redacted(config: Mapping[str, object]) -> dict[str, object]:
    """``config`` with every secret setting's value replaced, fit for a log line."""
    return {
        k: "[redacted]" if any(m in k.lower() for m in _SECRET_MARKERS) else v
        for k, v in config.items()
    }


@dataclass
class _Send:
    """One produced copy of an event: pending until librdkafka's delivery report."""

    done: bool = False
    error: KafkaError | None = None
    offsets: list[tuple[int | None, int | None]] = field(default_factory=list)

    def report(self, err: KafkaError | None, msg: Message) -> None:
        self.done = True
        self.error = err
        self.offsets.append((msg.partition(), msg.offset()))

    @property
    def ok(self) -> bool:
        return self.done and self.error is None


class KafkaPublisher:
    """The relay's Kafka publisher; one librdkafka producer, rebuilt after a fatal error."""

    name = "kafka"

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        options: Mapping[str, str] | None = None,
        topic_prefix: str = "",
        timeout: float = 10,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.prefix = topic_prefix
        self.timeout = timeout
        # Ours first, the operator's options last: they may tune or secure anything.
        self._config: dict[str, object] = {
            "bootstrap.servers": bootstrap_servers,
            "client.id": "tenantops-relay",
            "enable.idempotence": True,
            "acks": "all",
            # A message librdkafka could not deliver in this long fails; the relay
            # sends it again. Until then a retried publish waits for it.
            "message.timeout.ms": max(1000, int(timeout * 1000 * 6)),
            "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000)),
            **(options or {}),
        }
        self._producer: Producer | None = None
        self._fatal: KafkaError | None = None
        self._last_error: KafkaError | None = None
        # Event id -> its copy still in this producer (or delivered since the relay last asked).
        self._sends: dict[str, _Send] = {}

    def __repr__(self) -> str:
        return f"KafkaPublisher({redacted(self._config)!r}, topic_prefix={self.prefix!r})"

    def topic(self, topic: str) -> str:
        return self.prefix + topic

    def _on_error(self, err: KafkaError) -> None:
        # Served from poll/flush on the relay's thread. Fatal errors (the idempotent
        # producer lost its sequence) leave the producer unusable: rebuild it.
        self._last_error = err
        if err.fatal():
            self._fatal = err

    def _client(self) -> Producer:
        if self._producer is not None and self._fatal is not None:
            log.warning(
                "kafka producer hit a fatal error; starting a new one", error=str(self._fatal)
            )
            self._discard()
        if self._producer is None:
            try:
                self._producer = Producer(self._config, logger=log, error_cb=self._on_error)
            except (KafkaException, ValueError, TypeError) as exc:
                # A config error names the setting, never its value.
                raise PublishError(f"Kafka producer could not be created: {exc}") from exc
        return self._producer

    def _discard(self) -> None:
        producer, self._producer = self._producer, None
        self._fatal = None
        self._sends.clear()
        if producer is not None:
            try:
                producer.purge(in_queue=True, in_flight=True, blocking=False)
                producer.poll(0)
            finally:
                producer.close()

    def _produce(self, producer: Producer, event: OutboxEvent) -> _Send:
        send = _Send()
        headers: list[tuple[str, str | bytes | None]] = [
            ("content-type", CONTENT_TYPE.encode()),
            ("ce_id", event.id.encode()),
            ("ce_type", event.type.encode()),
        ]
        if event.tenant_id is not None:
            headers.append(("ce_subject", event.tenant_id.encode()))
        producer.produce(
            self.topic(event.topic),
            value=encode(event),
            key=event.tenant_id.encode() if event.tenant_id is not None else NO_TENANT_KEY,
            headers=headers,
            on_delivery=send.report,
        )
        return send

    def publish(self, events: Sequence[OutboxEvent]) -> None:
        """Produce ``events`` in order, wait for their delivery reports up to ``timeout``."""
        if not events:
            return
        producer = self._client()
        sends: list[_Send] = []
        refused: str | None = None
        for event in events:
            send = self._sends.get(event.id)
            if send is None or (send.done and not send.ok):
                try:
                    send = self._produce(producer, event)
                except (BufferError, KafkaException) as exc:
                    # Local queue full or producer unusable: send what was produced,
                    # the rest goes next time (after these, so order holds).
                    refused = f"{exc!r}"
                    break
                self._sends[event.id] = send
            sends.append(send)
        deadline = time.monotonic() + self.timeout
        while not all(s.done for s in sends):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._fatal is not None:
                break
            producer.flush(min(remaining, 0.5))
        producer.poll(0)

        acknowledged = 0
        for send in sends:
            if not send.ok:
                break
            acknowledged += 1
        # The relay marks the acknowledged ones published and never asks for them again.
        # Failed ones are produced afresh when asked again; pending ones are awaited, and
        # those delivered behind a pending one (on another partition) count next time.
        for event in events[:acknowledged]:
            del self._sends[event.id]
        self._sends = {i: s for i, s in self._sends.items() if not s.done or s.ok}
        if acknowledged == len(events):
            return
        failed = next((s.error for s in sends if s.done and s.error is not None), None)
        if failed is not None:
            reason = f"delivery failed: {failed.name()}: {failed.str()}"
        elif refused is not None:
            reason = f"producer refused more: {refused}"
        else:
            last = self._last_error
            reason = f"no acknowledgement within {self.timeout:g}s" + (
                f" (last error: {last.name()}: {last.str()})" if last is not None else ""
            )
        raise PublishError(
            f"Kafka at {self.bootstrap_servers} took {acknowledged} of {len(events)} events: "
            + reason,
            acknowledged=acknowledged,
        )

    def check(self) -> str:
        """Cluster metadata within ``timeout``: brokers, and which of our topics exist."""
        try:
            metadata: Any = self._client().list_topics(timeout=self.timeout)
        except KafkaException as exc:
            raise PublishError(
                f"Kafka at {self.bootstrap_servers} did not answer: {exc.args[0]}"
            ) from exc
        wanted = [self.topic(t) for t in TOPICS]
        missing = [t for t in wanted if t not in metadata.topics]
        topics = (
            f"topics missing (auto-created on first publish only if the broker allows): "
            f"{', '.join(missing)}"
            if missing
            else f"all {len(wanted)} topics present"
        )
        return (
            f"Kafka {self.bootstrap_servers}: cluster {metadata.cluster_id}, "
            f"{len(metadata.brokers)} brokers, {topics}"
        )

    def close(self) -> None:
        """Drop what is still queued: those events stay in the outbox for the next relay."""
        self._discard()
