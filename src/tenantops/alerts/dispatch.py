"""Which runbook an alert starts, and how the runbook is found.

An alert names its playbook with the label ``tenantops_playbook``; without it,
``AlertsSettings.playbooks`` maps its ``alertname`` to one. Only runbook ids
are accepted, never file paths: labels come from whoever writes alert rules,
and must not make the server read files. ``runbooks_dir`` adds a folder of
playbooks besides the shipped library (read once per process, like the library).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from tenantops.alerts.settings import AlertsSettings
from tenantops.runbooks import spec
from tenantops.runbooks.spec import Loaded

PLAYBOOK_LABEL = "tenantops_playbook"
TENANT_LABEL = "tenant"
RESOLVED_SIGNAL = "alert_resolved"

Resolve = Callable[[str], Loaded]


@cache
def _library(extra: Path | None) -> dict[str, Loaded]:
    return spec.load_library(extra) if extra is not None else spec.shipped()


def library_resolver(extra: Path | None = None) -> Resolve:
    """Runbooks by id from the shipped library plus ``extra`` (``NotFound`` otherwise)."""

    def resolve(runbook_id: str) -> Loaded:
        return spec.get(_library(extra), runbook_id)

    return resolve


@dataclass(frozen=True)
class Dispatch:
    """The receiver's seams: where runbooks come from and which alertname starts which."""

    resolve: Resolve = field(default_factory=library_resolver)
    playbooks: Mapping[str, str] = field(default_factory=dict)
    # Severity labels whose alerts open an incident when no playbook takes them on.
    incident_severities: tuple[str, ...] = ("critical",)

    @classmethod
    def from_settings(cls, settings: AlertsSettings) -> Dispatch:
        return cls(
            resolve=library_resolver(settings.runbooks_dir),
            playbooks=settings.playbooks,
            incident_severities=tuple(settings.incident_severities),
        )

    def playbook_for(self, labels: Mapping[str, str]) -> str | None:
        """The runbook id an alert asks for: its label first, then the alertname mapping."""
        named = labels.get(PLAYBOOK_LABEL, "").strip()
        return named or self.playbooks.get(labels.get("alertname", "")) or None
