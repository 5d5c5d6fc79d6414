"""Settings of the Alertmanager receiver (``TENANTOPS_ALERTS__*``)."""

from __future__ import annotations

from pydantic import BaseModel


class AlertsSettings(BaseModel):
    """How the receiver authenticates Alertmanager and which playbook an alert starts."""
