"""Settings of the Alertmanager receiver (``TENANTOPS_ALERTS__*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, field_validator


class AlertsSettings(BaseModel):
    """How the receiver authenticates Alertmanager and which playbook an alert starts.

    With neither ``bearer_token`` nor ``hmac_secret`` set the receiver refuses
    every notification (503): an unauthenticated door into the runbook engine
    is never the default.
    """

    bearer_token: SecretStr | None = Field(
        default=None,
        description="Token Alertmanager sends as 'Authorization: Bearer <token>' "
        "(http_config.authorization.credentials)",
    )
    hmac_secret: SecretStr | None = Field(
        default=None,
        description="Key of the HMAC-SHA256 signature a relay sends in X-Tenantops-Signature",
    )

    @field_validator("bearer_token", "hmac_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """An empty secret is no secret: ``HMAC_SECRET=`` must not let anyone sign."""
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None if isinstance(raw, str) and not raw.strip() else value

    playbooks: dict[str, str] = Field(
        default_factory=dict,
        description="alertname -> runbook id, for alerts without a tenantops_playbook label",
    )
    incident_severities: list[str] = Field(
        default_factory=lambda: ["critical"],
        description="Alerts of these severity labels open an ITIL incident (and page on-call "
        "at priority 1-2) unless a playbook takes them on; the tenantops_incident label "
        "(true, false or a priority 1-4) decides for one alert",
    )
    runbooks_dir: Path | None = Field(
        default=None,
        description="A folder of extra runbook YAML files alerts may start, besides the library",
    )
