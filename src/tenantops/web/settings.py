"""Settings of the web UI (``TENANTOPS_WEB__*``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr


class WebSettings(BaseModel):
    """``secure_cookies``: ``auto`` marks the session cookie ``Secure`` except on plain
    http to 127.0.0.1/localhost, where a browser would then never send it back.

    Sign-in through the OIDC issuer of ``TENANTOPS_OIDC__ISSUER`` (whose claim
    settings map roles and tenant, as for bearer tokens) is on once
    ``oidc_client_id`` is set: the client registered at the issuer for the web UI,
    with ``oidc_client_secret`` for a confidential client (none for a public one).
    ``oidc_redirect_url`` is the callback registered there; by default it is built
    from the request (``<scheme>://<host>/login/oidc/callback``), which is wrong
    behind a proxy that rewrites the host, so set it there.
    """

    secure_cookies: Literal["auto", "always", "never"] = "auto"
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_scopes: str = Field(
        default="openid profile email",
        description="space-separated; 'openid' is added when missing",
    )
    oidc_redirect_url: str | None = None
    oidc_display_name: str | None = Field(
        default=None, description="shown as 'Sign in with <name>'; default: the issuer's host"
    )
