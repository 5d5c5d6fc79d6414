"""Who may post notifications: Alertmanager's bearer token, or a relay's HMAC signature.

The receiver is a public route (no tenantops API token): Alertmanager can only
send a static credential it is configured with. The comparison is constant
time, and neither the expected nor the presented secret is ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from tenantops.alerts.settings import AlertsSettings
from tenantops.errors import AppError, NotAuthenticated

SIGNATURE_HEADER = "X-Tenantops-Signature"
SIGNATURE_PREFIX = "sha256="


class ReceiverNotConfigured(AppError):
    """No credential is configured: the receiver stays closed rather than open."""

    status = 503
    slug = "receiver-not-configured"
    title = "Receiver not configured"


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Tenantops-Signature`` value of ``body`` (what a relay sends)."""
    return SIGNATURE_PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _bearer(headers: Mapping[str, str]) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def verify(settings: AlertsSettings, headers: Mapping[str, str], body: bytes) -> str:
    """Accept the request or raise; returns how it authenticated (``bearer`` or ``hmac``).

    Either configured credential is enough. Nothing configured is a 503, so a
    fresh install never runs playbooks for whoever finds the URL.
    """
    if settings.bearer_token is None and settings.hmac_secret is None:
        raise ReceiverNotConfigured(
            "the Alertmanager receiver is not configured: set TENANTOPS_ALERTS__BEARER_TOKEN "
            "or TENANTOPS_ALERTS__HMAC_SECRET"
        )
    token = _bearer(headers)
    if settings.bearer_token is not None and token is not None:
        expected = settings.bearer_token.get_secret_value().encode()
        if hmac.compare_digest(token.encode(), expected):
            return "bearer"
    signature = headers.get(SIGNATURE_HEADER.lower())
    if settings.hmac_secret is not None and signature is not None:
        wanted = sign(settings.hmac_secret.get_secret_value().encode(), body)
        if hmac.compare_digest(signature.strip().lower().encode(), wanted.encode()):
            return "hmac"
    raise NotAuthenticated(
        "the receiver needs 'Authorization: Bearer <token>' or a valid "
        f"{SIGNATURE_HEADER}: sha256=<hex> over the body"
    )
