"""Settings of the remote identity adapters (Keycloak, Entra ID) and what they share.

Client secrets are ``SecretStr``: never in a repr, a log line or an error.
Both adapters answer an HTTP failure with one ``IdentityError`` whose ``retry``
follows one table (``verdict``), so a runbook step treats both vendors alike:

=========================================  ===============
401, 403, an OAuth ``invalid_client``      ``needs_human``  (credentials or roles must change)
404, 400, other 4xx                        ``permanent``    (each call says what was missing)
409 where the wanted thing already exists  success          (create group, add member)
409 otherwise                              ``permanent``
429 (``Retry-After`` kept), 5xx, network   ``retriable``
=========================================  ===============
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

from tenantops.drivers.errors import DriverError, Retry, retry_after

NAME = r"^[A-Za-z0-9_.-]*$"


class KeycloakSettings(BaseModel):
    """Where the Keycloak realm is and the service-account client tenantops logs in with."""

    server_url: str = Field(
        default="http://127.0.0.1:8080",
        pattern=r"^https?://\S+$",
        description="Keycloak's base URL (with /auth on Keycloak before 17).",
    )
    realm: str = Field(default="tenants", pattern=r"^[A-Za-z0-9_.-]+$")
    client_id: str = Field(default="tenantops", description="A confidential client.")
    client_secret: SecretStr = Field(default=SecretStr(""))
    group_prefix: str = Field(default="tenant-", pattern=NAME)
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)


class EntraSettings(BaseModel):
    """The Entra ID (Azure AD) tenant and the app registration tenantops logs in as."""

    tenant_id: str = Field(default="", description="The directory (tenant) id.")
    client_id: str = Field(default="", description="The app registration's client id.")
    client_secret: SecretStr = Field(default=SecretStr(""))
    graph_url: str = Field(default="https://graph.microsoft.com/v1.0", pattern=r"^https?://\S+$")
    login_url: str = Field(default="https://login.microsoftonline.com", pattern=r"^https?://\S+$")
    group_prefix: str = Field(default="tenant-", pattern=NAME)
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)


class IdentityError(DriverError):
    """The identity provider refused or missed a call; ``status``/``retry_after`` when known."""


def verdict(status: int) -> Retry:
    """What an HTTP error status means to a step (409 is decided by the caller first)."""
    if status in (401, 403):
        return Retry.NEEDS_HUMAN
    if status == 429 or status >= 500:
        return Retry.RETRIABLE
    return Retry.PERMANENT


def failure(what: str, status: int, header: str | None, hint: str = "") -> IdentityError:
    """The error for ``what`` answered with ``status``; ``hint`` says what to look at."""
    kind = verdict(status)
    wait = retry_after(header) if kind is Retry.RETRIABLE else None
    suffix = f" — {hint}" if hint else ""
    return IdentityError(
        f"{what}: HTTP {status}{suffix}", retry=kind, status=status, retry_after=wait
    )
