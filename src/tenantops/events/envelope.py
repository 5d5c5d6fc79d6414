"""The CloudEvents 1.0 envelope (structured JSON mode) of an outbox event."""

from __future__ import annotations

import json
from typing import Any

from tenantops.events.catalogue import CATALOGUE, SOURCE
from tenantops.events.models import OutboxEvent
from tenantops.kit.clock import as_utc

CONTENT_TYPE = "application/cloudevents+json"


def cloudevent(event: OutboxEvent) -> dict[str, Any]:
    """The structured CloudEvent: the same ``id`` on every delivery, for consumers to dedupe.

    ``sequence`` (the CloudEvents sequence extension) is the outbox position:
    a consumer can order or detect gaps by it.
    """
    kind = CATALOGUE[event.type]
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": event.id,
        "source": SOURCE,
        "type": event.type,
        "time": as_utc(event.time).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "dataschema": kind.dataschema,
        "sequence": str(event.seq),
        "topic": event.topic,
    }
    if event.tenant_id is not None:
        body["subject"] = event.tenant_id
    body["data"] = event.data
    return body


def encode(event: OutboxEvent) -> bytes:
    return json.dumps(cloudevent(event), separators=(",", ":"), sort_keys=True).encode()
