"""PagerDuty Events API v2: trigger, acknowledge and resolve an alert by its dedup key.

Every event is a POST to ``{base_url}/v2/enqueue`` with the service's
``routing_key``, an ``event_action`` and a ``dedup_key``; a trigger also
carries ``payload{summary, source, severity, custom_details}``. PagerDuty
answers ``202 {"status": "success", "dedup_key": …}``, ``400`` for an invalid
event (permanent), ``429`` when rate limited and ``5xx`` (both retriable).

The dedup key makes every call idempotent: a second trigger with the same key
while the alert is open adds to it instead of paging again, and acknowledging
or resolving twice changes nothing. As a notification channel
(``pagerduty:<name>``) a message triggers with its outbox id as the dedup key,
so a retried delivery never pages twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.notify.port import Envelope
from tenantops.drivers.notify.settings import PagerDutyChannel
from tenantops.drivers.notify.webhook import about, dumps, post

EVENTS_PATH = "/v2/enqueue"
SEVERITIES = ("critical", "error", "warning", "info")
SUMMARY_LIMIT = 1024
DEDUP_KEY_LIMIT = 255


def _dedup_key(value: str) -> str:
    if not value or len(value) > DEDUP_KEY_LIMIT:
        raise DriverError(
            f"a PagerDuty dedup key needs 1–{DEDUP_KEY_LIMIT} characters", retry=Retry.PERMANENT
        )
    return value


class PagerDutyEvents:
    """One PagerDuty service, reached through its Events API v2 integration key."""

    def __init__(self, name: str, channel: PagerDutyChannel, client: httpx.Client) -> None:
        self.channel = f"pagerduty:{name}"
        self.url = channel.base_url.rstrip("/") + EVENTS_PATH
        self.source = channel.source
        self.severity = channel.severity
        self._routing_key = channel.routing_key
        self._client = client

    def _send(self, event: Mapping[str, Any]) -> str:
        try:
            body = dumps({"routing_key": self._routing_key.get_secret_value(), **event})
        except (TypeError, ValueError) as exc:
            raise DriverError(
                f"{self.channel}: the event is not JSON: {exc}", retry=Retry.PERMANENT
            ) from None
        response = post(self._client, self.url, channel=self.channel, body=body)
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        key = answer.get("dedup_key") if isinstance(answer, dict) else None
        return str(key or event["dedup_key"])

    def trigger(
        self,
        *,
        summary: str,
        source: str,
        severity: str,
        dedup_key: str,
        custom_details: Mapping[str, Any] | None = None,
    ) -> str:
        """Open (or add to) the alert ``dedup_key``; returns the key PagerDuty confirmed."""
        if severity not in SEVERITIES:
            raise DriverError(
                f"PagerDuty severity must be one of {', '.join(SEVERITIES)}, not {severity!r}",
                retry=Retry.PERMANENT,
            )
        summary = " ".join(summary.split())
        if not summary or not source.strip():
            raise DriverError(
                "a PagerDuty trigger needs a summary and a source", retry=Retry.PERMANENT
            )
        if len(summary) > SUMMARY_LIMIT:
            summary = summary[: SUMMARY_LIMIT - 1] + "…"
        payload: dict[str, Any] = {"summary": summary, "source": source, "severity": severity}
        if custom_details:
            payload["custom_details"] = dict(custom_details)
        return self._send(
            {
                "event_action": "trigger",
                "dedup_key": _dedup_key(dedup_key),
                "client": "tenantops",
                "payload": payload,
            }
        )

    def acknowledge(self, dedup_key: str) -> str:
        """Acknowledge the open alert ``dedup_key`` (stops escalation, keeps it open)."""
        return self._send({"event_action": "acknowledge", "dedup_key": _dedup_key(dedup_key)})

    def resolve(self, dedup_key: str) -> str:
        """Resolve the alert ``dedup_key``."""
        return self._send({"event_action": "resolve", "dedup_key": _dedup_key(dedup_key)})

    def deliver(self, envelope: Envelope) -> None:
        """A notification as a trigger: the subject is the summary, the message id the key."""
        meta = about(envelope)
        details = {
            "body": envelope.body,
            "message_id": envelope.message_id,
            "audience": meta.audience,
            "template": meta.template,
            "tenant": meta.tenant,
        }
        self.trigger(
            summary=envelope.subject,
            source=self.source,
            severity=self.severity,
            dedup_key=envelope.message_id,
            custom_details={k: v for k, v in details.items() if v is not None},
        )
