"""Signed webhook delivery (the Standard Webhooks scheme, HMAC-SHA256).

Each request carries ``webhook-id`` (the event id, the same on every retry),
``webhook-timestamp`` (Unix seconds) and ``webhook-signature``:
``v1,`` + base64 of HMAC-SHA256 over ``{id}.{timestamp}.{body}`` with the
subscription's secret. A receiver recomputes it and rejects a timestamp far
from its clock (replays).

Secrets are never stored: a subscription's secret is derived from the
server's signing key and the subscription id, shown once at creation, and
derived again for every delivery.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import httpx

from tenantops.config import Settings
from tenantops.drivers.errors import retry_after
from tenantops.events.envelope import CONTENT_TYPE

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix, not a secret
KEY_FILE = "events-signing.key"


def signing_key(settings: Settings) -> bytes:
    """The configured key, or the embedded default's key file (made once, mode 0600).

    Several replicas on one PostgreSQL database must share the key: set
    ``TENANTOPS_EVENTS__SIGNING_KEY`` on each.
    """
    if settings.events.signing_key is not None:
        return settings.events.signing_key.get_secret_value().encode()
    path = Path(settings.data_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under a temporary name, then linked into place: a second
        # process starting at the same moment reads the winner's key, never half.
        draft = path.with_name(f".{KEY_FILE}.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip().encode()


def secret_for(key: bytes, subscription_id: str) -> str:
    """The subscription's secret: ``whsec_`` + base64 of 32 bytes derived from ``key``."""
    raw = hmac.new(key, f"webhook-subscription:{subscription_id}".encode(), hashlib.sha256)
    return SECRET_PREFIX + base64.b64encode(raw.digest()).decode()


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does (used by the tests and documented for users)."""
    expected = signature(secret, headers["webhook-id"], int(headers["webhook-timestamp"]), body)
    offered = headers["webhook-signature"].split()
    return any(hmac.compare_digest(expected, s) for s in offered)


@dataclass(frozen=True)
class Attempt:
    """How one POST went: ``ok``, the status (if any answer), what went wrong, when to retry."""

    ok: bool
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None


def post(
    client: httpx.Client, url: str, *, secret: str, msg_id: str, timestamp: int, body: bytes
) -> Attempt:
    """POST ``body`` signed; any 2xx is delivered, anything else is retried later."""
    headers = {
        "content-type": CONTENT_TYPE,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id, timestamp, body),
        "user-agent": "tenantops-webhooks/1",
    }
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return Attempt(False, None, f"{type(exc).__name__}: {exc}")
    if 200 <= response.status_code < 300:
        return Attempt(True, response.status_code)
    return Attempt(
        False,
        response.status_code,
        f"HTTP {response.status_code}: {response.text[:200]}",
        retry_after(response.headers.get("retry-after")),
    )
