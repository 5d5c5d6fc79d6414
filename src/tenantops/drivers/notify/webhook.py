"""Notification webhooks over HTTP: what an answer means, and the generic signed webhook.

Every channel client (Slack, Teams, PagerDuty, this one) POSTs through ``post``,
so one table decides what an HTTP outcome means for a retry:

========================================  =====================================
2xx                                       delivered
408, 429, 5xx, no connection, a timeout   ``retriable`` (``Retry-After`` kept)
401, 403                                  ``needs_human``: wrong URL or secret
any other answer (400, 404, 410, 3xx, …)  ``permanent``
========================================  =====================================

A timeout after the receiver got the request means it may see the message
twice (at-least-once); the message id travels with it so receivers can
deduplicate. Error messages name the channel (``slack:secops``), never its URL:
Slack and Teams URLs are credentials.

The generic webhook POSTs ``{"message_id", "subject", "body", "audience",
"template", "tenant"}`` signed the Standard Webhooks way (``webhook-id`` = the
message id, ``webhook-timestamp``, ``webhook-signature``), with the signing
function event webhooks use, so one receiver-side ``verify`` checks both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from tenantops.drivers.errors import DriverError, Retry, retry_after
from tenantops.drivers.notify.port import Envelope
from tenantops.drivers.notify.settings import WebhookChannel
from tenantops.events.webhooks import signature
from tenantops.kit.clock import utcnow

USER_AGENT = "tenantops-notify/1"


class ChannelError(DriverError):
    """A channel refused or missed a message; ``status`` and ``retry_after`` when known."""


def http_client(
    timeout_seconds: float = 10.0, *, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """The client channels share: a timeout on every phase, redirects not followed."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout_seconds),
        follow_redirects=False,
        headers={"user-agent": USER_AGENT},
        transport=transport,
    )


def verdict(status: int) -> Retry:
    """What an HTTP error status means for trying again."""
    if status in (408, 429) or status >= 500:
        return Retry.RETRIABLE
    if status in (401, 403):
        return Retry.NEEDS_HUMAN
    return Retry.PERMANENT


def _scrub(text: str, url: str) -> str:
    return " ".join(text.replace(url, "<url>").split())


def _http_error(channel: str, response: httpx.Response, url: str) -> ChannelError:
    status = response.status_code
    kind = verdict(status)
    wait = retry_after(response.headers.get("retry-after")) if kind is Retry.RETRIABLE else None
    text = _scrub(response.text, url)[:300] or response.reason_phrase
    message = f"{channel}: HTTP {status}: {text}"
    if kind is Retry.NEEDS_HUMAN:
        message += " — check the channel's URL, key or secret"
    if wait is not None:
        message += f"; retry after {wait:g}s"
    return ChannelError(message, retry=kind, status=status, retry_after=wait)


def post(
    client: httpx.Client,
    url: SecretStr | str,
    *,
    channel: str,
    body: bytes,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """POST ``body`` as JSON; the 2xx response, or a ``ChannelError`` saying what a retry does."""
    target = url.get_secret_value() if isinstance(url, SecretStr) else url
    try:
        response = client.post(
            target, content=body, headers={"content-type": "application/json", **(headers or {})}
        )
    except httpx.TransportError as exc:
        raise ChannelError(
            f"{channel}: no answer: {type(exc).__name__}: {_scrub(str(exc), target)}",
            retry=Retry.RETRIABLE,
        ) from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise ChannelError(
            f"{channel}: the request could not be made ({type(exc).__name__})",
            retry=Retry.PERMANENT,
        ) from None
    if 200 <= response.status_code < 300:
        return response
    raise _http_error(channel, response, target)


def dumps(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON, the bytes that are sent (and signed)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True)
class About:
    """What the outbox knows of a message beyond its text: audience, template, tenant."""

    audience: str | None
    template: str | None
    tenant: str | None


def about(envelope: Envelope) -> About:
    """The envelope's audience, template and tenant name, where it carries them.

    ``Envelope`` gains these fields in the lead's wiring change (see ADR 0013);
    until then they are ``None``.
    """
    return About(
        audience=getattr(envelope, "audience", None),
        template=getattr(envelope, "template", None),
        tenant=getattr(envelope, "tenant_name", None),
    )


def webhook_payload(envelope: Envelope) -> dict[str, Any]:
    """The JSON a generic webhook receives."""
    meta = about(envelope)
    return {
        "message_id": envelope.message_id,
        "subject": envelope.subject,
        "body": envelope.body,
        "audience": meta.audience,
        "template": meta.template,
        "tenant": meta.tenant,
    }


class SignedWebhook:
    """A generic webhook endpoint; every POST signed with the channel's ``whsec_`` secret."""

    def __init__(self, name: str, channel: WebhookChannel, client: httpx.Client) -> None:
        self.channel = f"webhook:{name}"
        self.url = channel.url
        self._secret = channel.secret
        self._client = client

    def post(self, payload: Mapping[str, Any], *, message_id: str) -> None:
        """POST ``payload``; ``message_id`` is the ``webhook-id`` receivers deduplicate on."""
        body = dumps(payload)
        timestamp = int(utcnow().timestamp())
        headers = {
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(
                self._secret.get_secret_value(), message_id, timestamp, body
            ),
        }
        post(self._client, self.url, channel=self.channel, body=body, headers=headers)

    def deliver(self, envelope: Envelope) -> None:
        self.post(webhook_payload(envelope), message_id=envelope.message_id)
