"""NATS JetStream: one subject per topic, deduplicated by ``Nats-Msg-Id`` = event id.

nats-py is asyncio; the publisher keeps its own event loop on a daemon thread
so the relay (a plain thread) can call it synchronously.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import nats
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from tenantops.events.catalogue import TOPICS
from tenantops.events.envelope import CONTENT_TYPE, encode
from tenantops.events.models import OutboxEvent
from tenantops.events.publishers.port import PublishError

T = TypeVar("T")
log = structlog.get_logger("tenantops.events")

# How long JetStream remembers a message id: a republish within it is dropped.
DUPLICATE_WINDOW_SECONDS = 24 * 3600


class NatsPublisher:
    name = "nats"

    def __init__(
        self, url: str, *, stream: str = "TENANTOPS", subject_prefix: str = "", timeout: float = 10
    ) -> None:
        self.url = url
        self.stream = stream
        self.prefix = subject_prefix
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="nats-publisher", daemon=True
        )
        self._thread.start()
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._down = False

    # nats-py reports every failed reconnect attempt; say it once per outage instead.
    async def _on_error(self, exc: Exception) -> None:
        if not self._down:
            log.warning("nats error", url=self.url, error=repr(exc))

    async def _on_disconnected(self) -> None:
        if not self._down:
            self._down = True
            log.warning("nats disconnected; reconnecting", url=self.url)

    async def _on_reconnected(self) -> None:
        self._down = False
        log.info("nats reconnected", url=self.url)

    def subject(self, topic: str) -> str:
        return self.prefix + topic

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        try:
            return future.result(self.timeout * 3)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise PublishError(f"NATS at {self.url} did not answer in time") from exc

    async def _connected(self) -> JetStreamContext:
        if self._nc is None or self._nc.is_closed or self._js is None:
            # Bounded: with reconnects on, nats-py would retry a first connect forever.
            self._nc = await asyncio.wait_for(self._connect(), self.timeout)
            self._js = self._nc.jetstream(timeout=self.timeout)
            subjects = [self.subject(t) for t in TOPICS]
            try:
                await self._js.stream_info(self.stream)
            except NotFoundError:
                await self._js.add_stream(
                    StreamConfig(
                        name=self.stream,
                        subjects=subjects,
                        duplicate_window=DUPLICATE_WINDOW_SECONDS,
                    )
                )
        return self._js

    async def _connect(self) -> Client:
        return await nats.connect(
            self.url,
            connect_timeout=self.timeout,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            name="tenantops-relay",
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )

    async def _publish(self, events: Sequence[OutboxEvent]) -> None:
        try:
            js = await self._connected()
        except Exception as exc:
            raise PublishError(f"NATS at {self.url} is unreachable: {exc!r}") from exc
        acknowledged = 0
        try:
            # Sent back to back on one connection (JetStream keeps their order),
            # then the acks are awaited in order.
            pending = [
                await js.publish_async(
                    self.subject(e.topic),
                    encode(e),
                    headers={
                        "Nats-Msg-Id": e.id,
                        "Content-Type": CONTENT_TYPE,
                        "ce-type": e.type,
                        "ce-subject": e.tenant_id or "",
                    },
                )
                for e in events
            ]
            for ack in pending:
                await asyncio.wait_for(ack, self.timeout)
                acknowledged += 1
        except Exception as exc:
            raise PublishError(
                f"NATS took {acknowledged} of {len(events)} events: {exc!r}",
                acknowledged=acknowledged,
            ) from exc

    def publish(self, events: Sequence[OutboxEvent]) -> None:
        if events:
            self._call(self._publish(events))

    async def _check(self) -> str:
        js = await self._connected()
        info = await js.stream_info(self.stream)
        return f"NATS {self.url}: stream {self.stream} holds {info.state.messages} messages"

    def check(self) -> str:
        return self._call(self._check())

    async def _close(self) -> None:
        self._down = True  # closing on purpose: nothing to warn about
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            if self._thread.is_alive():
                self._call(self._close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            if not self._thread.is_alive():
                self._loop.close()
