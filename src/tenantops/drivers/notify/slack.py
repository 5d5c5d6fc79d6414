"""Slack incoming webhooks: the subject as a header block, the body as mrkdwn sections.

Slack answers ``200 ok``; errors come as 4xx with a plain-text reason
(``invalid_payload``, ``no_service``, ``channel_is_archived``) or 429 with
``Retry-After`` — ``webhook.post`` maps them. The webhook URL is the
credential: it is a ``SecretStr`` and never appears in an error.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import SecretStr

from tenantops.drivers.notify.port import Envelope
from tenantops.drivers.notify.webhook import dumps, post

HEADER_LIMIT = 150  # characters of a header block's plain_text
SECTION_LIMIT = 3000  # characters of a section block's text
MAX_SECTIONS = 20  # a long body is cut, not refused; the outbox keeps it whole


def _escape(text: str) -> str:
    # Slack's mrkdwn control characters; everything else is sent as written.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sections(body: str) -> list[str]:
    chunks: list[str] = []
    current = ""
    for line in _escape(body.strip()).splitlines():
        while len(line) > SECTION_LIMIT:
            if current:
                chunks.append(current)
                current = ""
            chunks.append(line[:SECTION_LIMIT])
            line = line[SECTION_LIMIT:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > SECTION_LIMIT:
            chunks.append(current)
            current = line
        else:
            current = candidate
    if current:
        chunks.append(current)
    if len(chunks) > MAX_SECTIONS:
        chunks = [*chunks[: MAX_SECTIONS - 1], "_(cut: the full text is in the tenantops outbox)_"]
    return chunks


def slack_payload(subject: str, body: str) -> dict[str, Any]:
    """The incoming-webhook JSON: ``text`` (the notification fallback) and ``blocks``."""
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _cut(subject, HEADER_LIMIT), "emoji": True},
        }
    ]
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": s}} for s in _sections(body)]
    return {"text": _cut(_escape(subject), SECTION_LIMIT), "blocks": blocks}


class SlackWebhook:
    """One Slack incoming webhook (one channel of one workspace)."""

    def __init__(self, name: str, url: SecretStr, client: httpx.Client) -> None:
        self.channel = f"slack:{name}"
        self._url = url
        self._client = client

    def post(self, *, subject: str, body: str) -> None:
        """Post one message; raises ``ChannelError`` saying whether a retry can help."""
        post(
            self._client, self._url, channel=self.channel, body=dumps(slack_payload(subject, body))
        )

    def deliver(self, envelope: Envelope) -> None:
        self.post(subject=envelope.subject, body=envelope.body)
