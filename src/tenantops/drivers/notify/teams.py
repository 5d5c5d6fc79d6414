"""Microsoft Teams incoming webhooks (Workflows / Power Automate): an Adaptive Card 1.4.

The Workflows "post to a channel when a webhook request is received" trigger
takes ``{"type": "message", "attachments": [{"contentType":
"application/vnd.microsoft.card.adaptive", "content": <card>}]}`` and answers
``202 Accepted`` (older connectors ``200``). The URL carries a signature
(``sig=…``): it is a ``SecretStr`` and never appears in an error.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import SecretStr

from tenantops.drivers.notify.port import Envelope
from tenantops.drivers.notify.webhook import dumps, post

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
BODY_LIMIT = 20_000  # Teams refuses cards over ~28 KB; the outbox keeps the whole text


def adaptive_card(subject: str, body: str) -> dict[str, Any]:
    """An Adaptive Card 1.4: the subject in bold, then one wrapped TextBlock per paragraph."""
    text = body.strip()
    if len(text) > BODY_LIMIT:
        text = text[:BODY_LIMIT] + "\n\n(cut: the full text is in the tenantops outbox)"
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    blocks: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": subject, "weight": "Bolder", "size": "Medium", "wrap": True}
    ]
    blocks += [{"type": "TextBlock", "text": p, "wrap": True} for p in paragraphs]
    return {"$schema": CARD_SCHEMA, "type": "AdaptiveCard", "version": "1.4", "body": blocks}


def teams_payload(subject: str, body: str) -> dict[str, Any]:
    """The message envelope a Workflows webhook expects, carrying the card."""
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": CARD_CONTENT_TYPE,
                "contentUrl": None,
                "content": adaptive_card(subject, body),
            }
        ],
    }


class TeamsWebhook:
    """One Teams Workflows webhook (one channel or chat)."""

    def __init__(self, name: str, url: SecretStr, client: httpx.Client) -> None:
        self.channel = f"teams:{name}"
        self._url = url
        self._client = client

    def post(self, *, subject: str, body: str) -> None:
        """Post one card; raises ``ChannelError`` saying whether a retry can help."""
        post(
            self._client, self._url, channel=self.channel, body=dumps(teams_payload(subject, body))
        )

    def deliver(self, envelope: Envelope) -> None:
        self.post(subject=envelope.subject, body=envelope.body)
