"""The event catalogue as an AsyncAPI 3.0 document and as Markdown (``docs/events.md``).

Both are generated from ``catalogue``, so they cannot drift from what the code
emits; a test compares ``docs/events.md`` with ``markdown()``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tenantops import __version__
from tenantops.events.catalogue import (
    CATALOGUE,
    SOURCE,
    TOPIC_SUMMARIES,
    TOPICS,
    AccessChanged,
    AlertNotified,
    ApprovalRecorded,
    EventData,
    EventType,
    ItilRecordChanged,
    PageChanged,
    RateLimitChanged,
    RunFinished,
    SecretRotation,
    SlaBreached,
    StepFinished,
    StepHeld,
    TenantStateChanged,
)
from tenantops.events.envelope import CONTENT_TYPE

SCHEMA_REF = "#/components/schemas/{model}"
TENANT = {"tenant_id": "0193a0c4-5b6e-7d2f-9a10-2b3c4d5e6f70", "tenant_name": "acme-prod"}
# The state each lifecycle event type is reached from, and by which lifecycle event.
_FROM = {
    "requested": (None, None),
    "approved": ("requested", "approve"),
    "rejected": ("requested", "reject"),
    "provisioning": ("approved", "start_provisioning"),
    "provisioning_failed": ("provisioning", "provisioning_failed"),
    "verifying": ("provisioning", "provisioned"),
    "active": ("verifying", "verified"),
    "suspended": ("active", "suspend"),
    "offboarding": ("active", "offboard"),
    "archived": ("offboarding", "archive"),
}


def _name(kind: EventType) -> str:
    """``tenant.provisioning_failed`` -> ``tenantProvisioningFailed``."""
    first, *rest = re.split(r"[._]", kind.name)
    return first + "".join(p.capitalize() for p in rest)


def example_data(kind: EventType) -> EventData:
    """A realistic instance of ``kind``'s data (for the catalogue, docs and tests)."""
    run = {"run_id": "0193a0c4-6000-7000-8000-000000000001"}
    if kind.data is TenantStateChanged:
        state = kind.name.removeprefix("tenant.")
        before, event = _FROM[state]
        return TenantStateChanged(
            **TENANT,
            actor="gina@example.com" if state in ("approved", "rejected") else "system:engine",
            from_state=before,
            to_state=state,
            lifecycle_event=event,
            tier="standard",
            region="eu-central",
            reason="incident INC-4711" if state == "suspended" else None,
            ticket_ref="CHG-1042" if state == "requested" else None,
            run_id=run["run_id"],
        )
    if kind.data is ApprovalRecorded:
        return ApprovalRecorded(
            **TENANT,
            actor="sam@example.com",
            request_id="0193a0c4-7000-7000-8000-000000000002",
            kind="onboarding",
            role="security",
            decision="approve",
            status="approved",
            comment="network zones reviewed",
            risk_ref="RISK-17",
        )
    if kind.data is RunFinished:
        status = kind.name.removeprefix("run.")
        return RunFinished(
            **TENANT,
            actor="system:engine",
            **run,
            runbook="tenant-onboarding",
            version="1.2.0",
            status=status,
            error="step gitops failed: push rejected" if status == "failed" else None,
        )
    if kind.data is StepFinished:
        ok = kind.name.endswith("succeeded")
        return StepFinished(
            **TENANT,
            actor="system:engine",
            **run,
            runbook="tenant-onboarding",
            step="gitops",
            status="succeeded" if ok else "failed",
            attempt=1 if ok else 3,
            evidence={"commit": "9f2c1e4", "manifests_digest": "sha256:5d41…"} if ok else {},
            error=None if ok else "kubernetes-validate: ResourceQuota.spec.hard is required",
        )
    if kind.data is StepHeld:
        return StepHeld(
            **TENANT,
            actor="system:engine",
            **run,
            runbook="quota-change",
            step="gitops",
            window="weekend-night",
            until="2026-11-28T01:00:00+00:00",
        )
    if kind.data is SlaBreached:
        return SlaBreached(
            **TENANT,
            actor="system:engine",
            **run,
            runbook="tenant-onboarding",
            step="provisioning",
            deadline="2026-11-26T10:30:00Z",
        )
    if kind.data is PageChanged:
        step = kind.name.removeprefix("oncall.page.")
        return PageChanged(
            **TENANT,
            actor="oli@example.com" if step in ("acknowledged", "resolved") else "system:oncall",
            page_id="0193a0c4-b000-7000-8000-000000000006",
            key="itil:0193a0c4-c000-7000-8000-000000000007",
            summary="INC0000042 orders API returns 503 for acme-prod",
            severity="critical",
            policy="urgent",
            status="triggered" if step in ("triggered", "escalated", "exhausted") else step,
            level=None if step == "triggered" else 2,
            round=1 if step == "exhausted" else 0,
            exhausted=step == "exhausted",
            targets=[] if step in ("triggered", "resolved") else ["oli@example.com"],
            record_id="0193a0c4-c000-7000-8000-000000000007",
        )
    if kind.data is AccessChanged:
        return AccessChanged(
            **TENANT,
            actor="oscar@example.com" if kind.name.endswith("granted") else "system:engine",
            grant_id="0193a0c4-8000-7000-8000-000000000003",
            subject="breakglass:oscar@example.com",
            reason="database failover stuck",
            incident_ref="INC-4711",
            expires_at="2026-11-26T11:00:00Z" if kind.name.endswith("granted") else None,
        )
    if kind.data is RateLimitChanged:
        applied = kind.name.endswith("applied")
        return RateLimitChanged(
            **TENANT,
            actor="system:engine",
            **run,
            rate=50.0 if applied else None,
            burst=100 if applied else None,
            reason="Cost Overrun: 124 % of the monthly budget" if applied else "alert resolved",
        )
    if kind.data is AlertNotified:
        fired = kind.name.endswith("fired")
        return AlertNotified(
            **TENANT,
            actor="system:alertmanager",
            alert_id="0193a0c4-a000-7000-8000-000000000005",
            alertname="TenantBudgetExceeded",
            fingerprint="5e2f1c0a9b8d7e6f",
            status="firing" if fired else "resolved",
            severity="critical",
            summary="acme has used 124 % of its monthly budget",
            playbook="cost-overrun",
            **run,
        )
    if kind.data is SecretRotation:
        rotated = kind.name == "secret.rotated"
        return SecretRotation(
            **TENANT,
            actor="oli@example.com" if rotated else "system:secrets-scheduler",
            path="app/database",
            owner="team-db@example.com",
            purpose="orders database, application user",
            rotation_days=90,
            last_rotated_at="2026-11-26T09:12:44+00:00" if rotated else "2026-08-28T09:12:44+00:00",
            due_at="2027-02-24T09:12:44+00:00" if rotated else "2026-11-26T09:12:44+00:00",
            status="ok" if rotated else "overdue" if kind.name.endswith("overdue") else "due_soon",
            version=4 if rotated else 3,
            evidence="CHG-2203" if rotated else None,
        )
    if kind.data is ItilRecordChanged:
        step = kind.name.removeprefix("itil.record.")
        return ItilRecordChanged(
            **TENANT,
            actor="oli@example.com",
            record_id="0193a0c4-c000-7000-8000-000000000007",
            number="INC0000042",
            kind="incident",
            state={"opened": "new", "transitioned": "resolved"}.get(step, "in_progress"),
            from_state={"opened": None, "transitioned": "in_progress"}.get(step, "in_progress"),
            priority=2,
            title="orders API returns 503 for acme-prod",
            assigned_to=None if step == "opened" else "team-orders",
            problem_id="0193a0c4-c000-7000-8000-000000000008" if step == "updated" else None,
            run_id=None,
            external_link=None,
        )
    raise LookupError(f"no example for {kind.type}")  # pragma: no cover - a test covers all


def example_event(kind: EventType) -> dict[str, Any]:
    """A whole CloudEvent of ``kind`` as a consumer receives it."""
    data = example_data(kind)
    return {
        "specversion": "1.0",
        "id": "0193a0c4-9000-7000-8000-000000000004",
        "source": SOURCE,
        "type": kind.type,
        "subject": data.tenant_id,
        "time": "2026-11-26T10:02:03.456789Z",
        "datacontenttype": "application/json",
        "dataschema": kind.dataschema,
        "sequence": "4242",
        "topic": kind.topic,
        "data": data.model_dump(mode="json"),
    }


def _envelope_schema(kind: EventType) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"CloudEvents 1.0 (structured mode) carrying {kind.data.__name__}.",
        "required": ["specversion", "id", "source", "type", "time", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "description": "Stable event id: dedupe on it."},
            "source": {"const": SOURCE},
            "type": {"const": kind.type},
            "subject": {"type": "string", "description": "The tenant id."},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"const": "application/json"},
            "dataschema": {"const": kind.dataschema},
            "sequence": {"type": "string", "description": "Outbox position (commit order)."},
            "topic": {"const": kind.topic},
            "data": {"$ref": SCHEMA_REF.format(model=kind.data.__name__)},
        },
    }


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every event type, by topic (channel)."""
    schemas: dict[str, Any] = {}
    for kind in CATALOGUE.values():
        schema = kind.data.model_json_schema(ref_template=SCHEMA_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[kind.data.__name__] = schema
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in TOPICS:
        channel = _name(EventType(topic, topic, "", EventData))
        kinds = [k for k in CATALOGUE.values() if k.topic == topic]
        channels[channel] = {
            "address": topic,
            "description": TOPIC_SUMMARIES[topic],
            "messages": {_name(k): {"$ref": f"#/components/messages/{_name(k)}"} for k in kinds},
        }
        operations[f"publish{channel[0].upper()}{channel[1:]}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": f"tenantops publishes {topic} events.",
            "messages": [{"$ref": f"#/channels/{channel}/messages/{_name(k)}"} for k in kinds],
        }
        for kind in kinds:
            schemas[f"{_name(kind)}Event"] = _envelope_schema(kind)
            messages[_name(kind)] = {
                "name": kind.type,
                "title": kind.type,
                "summary": kind.summary,
                "contentType": CONTENT_TYPE,
                "payload": {"$ref": SCHEMA_REF.format(model=f"{_name(kind)}Event")},
                "examples": [{"name": _name(kind), "payload": example_event(kind)}],
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "tenantops events",
            "version": __version__,
            "description": (
                "What happens to tenants, as CloudEvents 1.0 from a transactional outbox: "
                "at least once, in order per tenant, each with a stable id to dedupe on. "
                "Published to NATS JetStream or Kafka (topic = channel address, Kafka key = "
                "tenant id) and to signed webhooks (Standard Webhooks headers)."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def markdown() -> str:
    """``docs/events.md``: every topic and event type, with one example each."""
    out = [
        "# Event catalogue",
        "",
        "<!-- Generated by `tenantops events catalogue --markdown`; do not edit by hand. -->",
        "",
        "Every change to a tenant writes its event to the outbox in the same transaction;",
        "the relay publishes it at least once, in order per tenant, as a CloudEvents 1.0",
        "structured JSON message. Deduplicate on `id`. `sequence` is the outbox position.",
        "The machine-readable catalogue is the AsyncAPI 3.0 document at `/asyncapi.json`.",
        "",
        "## How events reach you",
        "",
        "- **In the outbox**, whatever is configured: `GET /api/v1/events?after=SEQ` pages",
        "  through the stream, `tenantops events tail` follows it in a terminal.",
        "- **NATS JetStream** (`TENANTOPS_EVENTS__BROKER=nats`, `…__NATS_URL`): one subject",
        "  per topic (`tenant.lifecycle`, …, with `…__NATS_SUBJECT_PREFIX` in front), in the",
        "  stream `…__NATS_STREAM` (default `TENANTOPS`, created if missing). `Nats-Msg-Id` is",
        "  the event id, so JetStream drops a republished event within its 24 h window.",
        "- **Kafka** (`TENANTOPS_EVENTS__BROKER=kafka`, `…__KAFKA_BOOTSTRAP_SERVERS`,",
        "  `…__KAFKA_OPTIONS` for security settings, `…__KAFKA_TOPIC_PREFIX`): topic = the",
        "  event's topic (create the four topics beforehand; the publisher does not), key =",
        "  tenant id (`-` for events without a tenant), so a tenant's events on one topic stay",
        "  in one partition, in order; across topics order them by `sequence`. Idempotent",
        "  producer; CloudEvents headers `ce_id`, `ce_type`, `ce_subject`. A resend after a",
        "  relay restart is a new producer session: deduplicate on `ce_id`. Tested against",
        "  librdkafka's mock cluster, not a real broker (decision 0010 says what that proves).",
        "- **Webhooks** (`tenantops events subscriptions create URL`, `--type` to filter):",
        "  a POST per event with the Standard Webhooks headers `webhook-id` (the event",
        "  id), `webhook-timestamp` and `webhook-signature` (`v1,` + base64 HMAC-SHA256 of",
        "  `{id}.{timestamp}.{body}` keyed with the base64-decoded part of the `whsec_…`",
        "  secret shown once at creation). Answer 2xx; anything else is retried with",
        "  exponential backoff (`…__WEBHOOK_ATTEMPTS`, default 8), then the delivery is",
        "  `dead`: `tenantops events deliveries --status dead`, `tenantops events redeliver ID`.",
        "  A tenant's later events wait while an earlier one to the same webhook is pending.",
        "",
        "Several `serve`/`worker` processes on one PostgreSQL database: one relay leads at a",
        "time (a lease), so events are not published twice in normal operation; after a",
        "crash the next leader may repeat the last batch — deduplicate on `id`. They must",
        "share `TENANTOPS_EVENTS__SIGNING_KEY` (webhook secrets are derived from it).",
        "",
        "**Retention.** The outbox is a queue, not the record (the audit trail is). The",
        "leading relay deletes, every hour, events older than `…__RETENTION_DAYS` (default",
        "30; `0` keeps everything) once they were published and dispatched, with their",
        "delivered or cancelled deliveries and the dead ones of deleted webhooks. Unpublished",
        "events, pending deliveries and dead ones of a live webhook stay until handled, and",
        "so does the newest event. A consumer paging `GET /api/v1/events` must not fall",
        "further behind than the window: each page's `pruned_through` is the highest",
        "sequence retention has deleted, and an `after` below it means events may be gone.",
        "`tenantops events prune [--days N]` does the same at once.",
        "",
        "| topic | event type | meaning |",
        "|---|---|---|",
    ]
    for topic in TOPICS:
        for kind in CATALOGUE.values():
            if kind.topic == topic:
                out.append(f"| `{topic}` | `{kind.type}` | {kind.summary} |")
    for topic in TOPICS:
        out += ["", f"## `{topic}`", "", TOPIC_SUMMARIES[topic]]
        kinds = [k for k in CATALOGUE.values() if k.topic == topic]
        if not kinds:
            out += ["", "No event types yet."]
        for kind in kinds:
            out += [
                "",
                f"### `{kind.type}`",
                "",
                f"{kind.summary} Data: `{kind.data.__name__}` — {kind.data.__doc__}",
                "",
                "```json",
                json.dumps(example_event(kind), indent=2),
                "```",
            ]
    return "\n".join(out) + "\n"
